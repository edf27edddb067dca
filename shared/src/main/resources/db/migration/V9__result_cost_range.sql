-- A run's cost is taken as at most $10^9 (Usage.MAX_COST_USD, the largest dollar limit the API accepts), and
-- numeric(14, 6) held less than $10^8: a run reported at $2 * 10^8 was charged to the budgets, then its row refused
-- (SQLSTATE 22003) and the run recorded as failed. A wider precision with the same scale rewrites nothing.
ALTER TABLE execution_results ALTER COLUMN cost TYPE numeric(16, 6);
