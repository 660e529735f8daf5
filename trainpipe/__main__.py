from trainpipe.cli import main

main()
