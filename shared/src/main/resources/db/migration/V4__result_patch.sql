-- An agent's changes as a patch against its base (the first 64 KiB), beside the diff stat.
ALTER TABLE execution_results ADD COLUMN patch text;
