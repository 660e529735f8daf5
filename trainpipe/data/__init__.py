"""Pure data building blocks: reading, schemas, splits, features. No run-folder knowledge here."""
