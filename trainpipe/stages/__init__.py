"""One module per stage, the same for every task: `SPEC` (its place in the pipeline, what its cache key covers,
how its summary reads) and `run(ctx: StageContext) -> StageResult`, read top to bottom (context.py). What
differs between tasks is asked of `ctx.task` (trainpipe/tasks); the stage table is assembled from the modules'
SPECs in trainpipe/pipeline/stages.py."""
