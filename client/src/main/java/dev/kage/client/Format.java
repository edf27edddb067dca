package dev.kage.client;

import com.fasterxml.jackson.databind.JsonNode;
import java.time.Instant;
import java.time.ZoneId;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.Locale;
import java.util.Set;

/** How {@code kage} shows the API's answers to people. Stateless; thread-safe. */
final class Format {
    /** Task statuses after which nothing changes. */
    static final Set<String> FINAL = Set.of("completed", "partial", "failed", "cancelled");

    private static final DateTimeFormatter CLOCK = DateTimeFormatter.ofPattern("HH:mm:ss", Locale.ROOT);

    private Format() {
    }

    /** {@code GET /api/v1/tasks/{id}} as a summary and one table row per agent. */
    static String task(JsonNode task) {
        StringBuilder out = new StringBuilder();
        Table head = new Table("", "");
        head.row("task", text(task, "task_id"));
        head.row("status", text(task, "status"));
        head.row("priority", text(task, "priority"));
        head.row("description", shorten(text(task, "description"), 200));
        head.row("repo", task.path("repo").isTextual() && !task.path("repo").asText().isBlank() ? task.path("repo").asText()
                : "(the worker's default)");
        head.row("base branch", text(task, "base_branch"));
        head.row("created", text(task, "created_at"));
        if (task.path("completed_at").isTextual()) {
            head.row("completed", task.path("completed_at").asText());
        }
        JsonNode budget = task.path("budget");
        if (budget.isObject()) {
            head.row("budget", budget.path("tokens_used").asLong() + " of " + budget.path("token_limit").asLong()
                    + " tokens used, " + budget.path("tokens_reserved").asLong() + " reserved, $"
                    + usd(budget.path("usd_used")) + " (" + budget.path("mode").asText("log") + " mode)");
        }
        String summary = head.render();
        // the header row of this two-column table is empty: drop it
        out.append(summary.substring(summary.indexOf('\n') + 1)).append('\n');

        Table agents = new Table("AGENT", "STATUS", "TOKENS", "COST", "TIME", "WORKER", "BRANCH", "DIFF");
        for (JsonNode agent : task.path("agents")) {
            boolean ran = agent.path("duration_ms").asLong() > 0 || FINAL_JOB.contains(agent.path("status").asText());
            agents.row(text(agent, "cli_name"), text(agent, "status"),
                    ran ? Long.toString(agent.path("total_tokens").asLong()) : null,
                    ran ? "$" + usd(agent.path("cost_usd")) : null,
                    ran ? duration(agent.path("duration_ms").asLong()) : null,
                    nullable(agent, "worker"), nullable(agent, "branch"), nullable(agent, "diff_stat"));
        }
        out.append(agents.render());
        for (JsonNode agent : task.path("agents")) {
            if (agent.path("waiting").isTextual()) {
                out.append("waiting: ").append(text(agent, "cli_name")).append(": ").append(agent.path("waiting").asText()).append('\n');
            }
        }
        if (task.path("errors").size() > 0) {
            out.append("errors:\n");
            for (JsonNode error : task.path("errors")) {
                out.append("  ").append(error.path("cli_name").asText("-")).append("  ")
                        .append(error.path("error_type").asText()).append(": ")
                        .append(shorten(error.path("error_message").asText(), 300)).append('\n');
            }
        }
        return out.toString();
    }

    private static final Set<String> FINAL_JOB = Set.of("completed", "failed", "cancelled");

    /** {@code GET /api/v1/tasks}: one row per task. */
    static String tasks(JsonNode page) {
        Table table = new Table("TASK", "STATUS", "PRIORITY", "AGENTS", "CREATED", "DESCRIPTION");
        for (JsonNode task : page.path("tasks")) {
            table.row(text(task, "task_id"), text(task, "status"), text(task, "priority"), join(task.path("agents")),
                    text(task, "created_at"), shorten(text(task, "description"), 60));
        }
        return table.render();
    }

    /** {@code GET /api/v1/queues}: one row per agent and priority, then the dead letters. */
    static String queues(JsonNode queues) {
        Table table = new Table("AGENT", "PRIORITY", "WAITING", "PENDING", "LENGTH", "CONSUMERS", "OLDEST", "DELAYED");
        for (JsonNode agent : queues.path("agents")) {
            for (JsonNode stream : agent.path("priorities")) {
                long oldest = stream.path("oldest_age_ms").asLong();
                long waiting = stream.path("waiting").asLong();
                table.row(text(agent, "agent"), text(stream, "priority"), waiting < 0 ? "?" : Long.toString(waiting),
                        stream.path("pending").asLong(), stream.path("length").asLong(), stream.path("consumers").asLong(),
                        oldest > 0 ? duration(oldest) : null, agent.path("delayed").asLong());
            }
        }
        return table.render() + "dead letters: " + queues.path("dead").asLong() + "\n";
    }

    /** {@code GET /api/v1/workers}: one row per live worker. */
    static String workers(JsonNode workers) {
        Table table = new Table("WORKER", "AGENTS", "SLOTS", "BUSY", "IN FLIGHT", "HEARTBEAT", "PID");
        for (JsonNode worker : workers.path("workers")) {
            table.row(text(worker, "id"), join(worker.path("agents")), worker.path("slots").asInt(), worker.path("busy").asInt(),
                    worker.path("in_flight").size() == 0 ? null : join(worker.path("in_flight")), nullable(worker, "heartbeat_at"),
                    nullable(worker, "pid"));
        }
        return table.size() == 0 ? "no live workers\n" : table.render();
    }

    /** {@code GET /api/v1/keys}: one row per key; never a key, only its prefix. */
    static String keys(JsonNode keys) {
        Table table = new Table("ID", "TENANT", "PREFIX", "SCOPES", "NAME", "CREATED", "REVOKED", "LAST USED");
        for (JsonNode key : keys.path("keys")) {
            table.row(text(key, "id"), text(key, "tenant"), text(key, "prefix") + "…", join(key.path("scopes")),
                    nullable(key, "name"), nullable(key, "created_at"), nullable(key, "revoked_at"), nullable(key, "last_used_at"));
        }
        return table.render();
    }

    /**
     * One line of {@code submit --wait} progress for a task event, or null for an event that says nothing new.
     *
     * @param task the task as read after the event, for a {@code job.finished} (its agent's figures); may be null
     * @param zone the zone the event's time is shown in
     */
    static String progress(SseEvent event, JsonNode task, ZoneId zone) {
        String agent = event.field("agent", null);
        String who = agent == null ? "task" : agent;
        String what = switch (event.name()) {
            case "task.submitted" -> "submitted for " + event.field("agents", "?").replace(",", ", ");
            case "job.started" -> "started on " + event.field("worker", "?") + attempt(event, "attempt");
            case "job.finished" -> finished(event, agent, task);
            case "job.rate_limited" -> "rate-limited (" + event.field("reason", "?") + "); waits until " + time(event.field("due", null), zone)
                    + ", not a failed attempt";
            case "agent.rate_limited" -> "the provider answered 429: limit group " + event.field("limit_group", "?")
                    + " paused for " + event.field("pause_ms", "?") + " ms"
                    + ("true".equals(event.field("final", "false")) ? "; retries used up" : "");
            case "job.retry_scheduled" -> "attempt failed (" + event.field("error_type", "?") + "); attempt "
                    + event.field("attempt", "?") + " at " + time(event.field("due", null), zone);
            case "job.handed_back" -> "handed back by " + event.field("worker", "?") + " (it is shutting down); runs again";
            case "job.dead_lettered" -> "dead-lettered: " + event.field("reason", "?") + " (dead letter " + event.field("dead_letter_id", "?") + ")";
            case "job.replayed" -> "replayed from dead letter " + event.field("dead_letter_id", "?") + attempt(event, "attempt");
            case "job.discarded" -> "dead letter " + event.field("dead_letter_id", "?") + " discarded; the job stays failed";
            case "job.requeued" -> "enqueued again by the reconciler (a replay Redis refused)" + attempt(event, "attempt");
            case "job.recorded" -> "outcome " + event.field("status", "?") + " written (it waited for Postgres); task "
                    + event.field("task_status", "?");
            case "task.ended" -> "task " + event.field("task_status", "?");
            case "budget.warning" -> "budget warning: " + describeFields(event, "type", "at", "task_id", "tenant", "agent");
            case "budget.refused" -> "not started: " + event.field("message", "budget refused");
            case "task.cancelled" -> "cancelled";
            default -> event.name() + " " + describeFields(event, "type", "at", "task_id", "tenant", "agent");
        };
        return time(event.field("at", null), zone) + "  " + who + ": " + what;
    }

    private static String finished(SseEvent event, String agent, JsonNode task) {
        String status = event.field("status", "?");
        JsonNode view = null;
        if (task != null) {
            for (JsonNode a : task.path("agents")) {
                if (a.path("cli_name").asText().equals(agent)) {
                    view = a;
                }
            }
        }
        StringBuilder out = new StringBuilder("finished ").append(status);
        if (view != null) {
            out.append(": ").append(view.path("total_tokens").asLong()).append(" tokens (in ").append(view.path("tokens_in").asLong())
                    .append(", out ").append(view.path("tokens_out").asLong());
            if (view.path("usage_source").isTextual()) {
                out.append(", from ").append(view.path("usage_source").asText());
            }
            out.append("), $").append(usd(view.path("cost_usd"))).append(", ").append(duration(view.path("duration_ms").asLong()));
            if (view.path("branch").isTextual()) {
                out.append(", branch ").append(view.path("branch").asText());
            }
            out.append(", ").append(view.path("diff_stat").isTextual() && !view.path("diff_stat").asText().isBlank()
                    ? oneLine(view.path("diff_stat").asText()) : "no changes");
            JsonNode error = view.path("error");
            if (error.isObject()) {
                out.append("; ").append(error.path("error_type").asText()).append(": ").append(shorten(error.path("error_message").asText(), 200));
            }
        }
        String taskStatus = event.field("task_status", null);
        if (taskStatus != null && FINAL.contains(taskStatus)) {
            out.append(" (task ").append(taskStatus).append(')');
        }
        return out.toString();
    }

    /** The last line of {@code submit --wait}: the task's end, its agents and what they used. */
    static String finalLine(JsonNode task) {
        int done = 0;
        int all = 0;
        long tokens = 0;
        java.math.BigDecimal cost = java.math.BigDecimal.ZERO;
        for (JsonNode agent : task.path("agents")) {
            all++;
            if ("completed".equals(agent.path("status").asText())) {
                done++;
            }
            tokens += agent.path("total_tokens").asLong();
            cost = cost.add(decimal(agent.path("cost_usd")));
        }
        return "task " + text(task, "task_id") + " " + text(task, "status") + ": " + done + " of " + all
                + " agents completed, " + tokens + " tokens, $" + plain(cost);
    }

    /** US dollars as sent, without trailing zeros: {@code 0.0123}, {@code 0}. */
    static String usd(JsonNode amount) {
        return plain(decimal(amount));
    }

    private static java.math.BigDecimal decimal(JsonNode amount) {
        if (amount.isNumber()) {
            return amount.decimalValue();
        }
        try {
            return amount.isTextual() ? new java.math.BigDecimal(amount.asText()) : java.math.BigDecimal.ZERO;
        } catch (NumberFormatException e) {
            return java.math.BigDecimal.ZERO;
        }
    }

    private static String plain(java.math.BigDecimal value) {
        return value.signum() == 0 ? "0" : value.stripTrailingZeros().toPlainString();
    }

    /** A compact duration: {@code 850 ms}, {@code 3.2 s}, {@code 4m05s}, {@code 2h03m}. */
    static String duration(long ms) {
        if (ms < 1000) {
            return ms + " ms";
        }
        if (ms < 60_000) {
            return String.format(Locale.ROOT, "%.1f s", ms / 1000.0);
        }
        long s = ms / 1000;
        if (s < 3600) {
            return String.format(Locale.ROOT, "%dm%02ds", s / 60, s % 60);
        }
        return String.format(Locale.ROOT, "%dh%02dm", s / 3600, (s % 3600) / 60);
    }

    /** Runs of whitespace, newlines included, as one space. */
    static String oneLine(String text) {
        return text.strip().replaceAll("\\s+", " ");
    }

    /** {@link #oneLine} of the text, cut to at most {@code max} characters (code points, never half of one) with an ellipsis. */
    static String shorten(String text, int max) {
        return truncate(oneLine(text), max);
    }

    /** The text cut to at most {@code max} code points, the last being an ellipsis when it was cut. */
    static String truncate(String text, int max) {
        if (text.codePointCount(0, text.length()) <= max) {
            return text;
        }
        return text.substring(0, text.offsetByCodePoints(0, Math.max(0, max - 1))) + "…";
    }

    /**
     * The columns a terminal gives the text: 2 for East Asian wide and full-width characters and most emoji, 0 for
     * combining marks and format characters (zero-width space, joiners), 1 otherwise.
     */
    static int width(String text) {
        int width = 0;
        for (int i = 0; i < text.length(); ) {
            int cp = text.codePointAt(i);
            i += Character.charCount(cp);
            int type = Character.getType(cp);
            if (type == Character.NON_SPACING_MARK || type == Character.ENCLOSING_MARK || type == Character.FORMAT) {
                continue;
            }
            width += wide(cp) ? 2 : 1;
        }
        return width;
    }

    private static boolean wide(int cp) {
        return (cp >= 0x1100 && cp <= 0x115F) // Hangul Jamo initials
                || (cp >= 0x2E80 && cp <= 0x303E) // CJK radicals, punctuation
                || (cp >= 0x3041 && cp <= 0x33FF) // kana, CJK compatibility
                || (cp >= 0x3400 && cp <= 0x4DBF) // CJK extension A
                || (cp >= 0x4E00 && cp <= 0x9FFF) // CJK unified ideographs
                || (cp >= 0xA000 && cp <= 0xA4CF) // Yi
                || (cp >= 0xAC00 && cp <= 0xD7A3) // Hangul syllables
                || (cp >= 0xF900 && cp <= 0xFAFF) // CJK compatibility ideographs
                || (cp >= 0xFE30 && cp <= 0xFE4F) // CJK compatibility forms
                || (cp >= 0xFF00 && cp <= 0xFF60) // full-width forms
                || (cp >= 0xFFE0 && cp <= 0xFFE6)
                || (cp >= 0x1F300 && cp <= 0x1F64F) // emoji
                || (cp >= 0x1F900 && cp <= 0x1F9FF)
                || (cp >= 0x20000 && cp <= 0x3FFFD); // CJK extensions B and later
    }

    private static String time(String instant, ZoneId zone) {
        if (instant == null) {
            return "--:--:--";
        }
        try {
            return CLOCK.format(Instant.parse(instant).atZone(zone));
        } catch (DateTimeParseException e) {
            return instant;
        }
    }

    private static String attempt(SseEvent event, String field) {
        String attempt = event.field(field, "1");
        return "1".equals(attempt) ? "" : " (attempt " + attempt + ")";
    }

    private static String describeFields(SseEvent event, String... skip) {
        Set<String> skipped = Set.of(skip);
        StringBuilder out = new StringBuilder();
        event.json().fields().forEachRemaining(e -> {
            if (!skipped.contains(e.getKey())) {
                out.append(out.isEmpty() ? "" : " ").append(e.getKey()).append('=').append(e.getValue().asText());
            }
        });
        return out.toString();
    }

    private static String text(JsonNode node, String field) {
        JsonNode value = node.path(field);
        return value.isMissingNode() || value.isNull() ? "-" : value.asText();
    }

    private static String nullable(JsonNode node, String field) {
        JsonNode value = node.path(field);
        return value.isMissingNode() || value.isNull() || value.asText().isBlank() ? null : value.asText();
    }

    private static String join(JsonNode array) {
        StringBuilder out = new StringBuilder();
        for (JsonNode item : array) {
            out.append(out.isEmpty() ? "" : ",").append(item.asText());
        }
        return out.isEmpty() ? "-" : out.toString();
    }
}
