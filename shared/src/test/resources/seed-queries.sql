-- Every SQL query of the seed document (shared/seed/000_10457e1ebf62a42f.txt), verbatim,
-- one per block separated by lines of "-- query". SeedQueriesTest runs each unchanged.
-- query
SELECT
  DATE(occurred_at) as date,
  COUNT(*) as violations,
  AVG((error_details->>'tokens_used')::int) as avg_tokens_used,
  AVG((error_details->>'token_limit')::int) as avg_token_limit
FROM development_docs.task_errors
WHERE error_type = 'BudgetExceededError'
GROUP BY DATE(occurred_at)
ORDER BY date DESC;
-- query
SELECT error_type, error_message, error_details->>'tokens_used' as tokens
  FROM development_docs.task_errors
  WHERE error_type = 'BudgetExceededError'
  ORDER BY occurred_at DESC LIMIT 1;
-- query
SELECT COUNT(*) FROM development_docs.task_errors
WHERE error_type = 'BudgetExceededError'
  AND occurred_at >= NOW() - INTERVAL '24 hours';
-- query
SELECT
  DATE(created_at) as date,
  cli_name,
  COUNT(*) as tasks,
  AVG(LENGTH(output_summary)) * 4 as avg_input_tokens
FROM development_docs.execution_results
WHERE created_at >= NOW() - INTERVAL '7 days'
GROUP BY DATE(created_at), cli_name
ORDER BY date DESC;
-- query
SELECT
  ROUND(100.0 * COUNT(DISTINCT CASE WHEN e.error_type = 'BudgetExceededError' THEN e.task_id END) / COUNT(DISTINCT r.task_id), 2) as budget_violation_pct
FROM development_docs.execution_results r
LEFT JOIN development_docs.task_errors e ON r.task_id = e.task_id
WHERE r.created_at >= NOW() - INTERVAL '30 days';
-- query
SELECT task_id, cli_name, cost
FROM development_docs.execution_results
WHERE cost > (SELECT AVG(cost) * 3 FROM development_docs.execution_results WHERE cli_name = execution_results.cli_name)
  AND created_at >= NOW() - INTERVAL '30 days'
ORDER BY cost DESC;
