package dev.kage.e2e.chaos;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.function.Consumer;

/**
 * The hostile-input corpus: bad requests, each with a name, that the API must refuse with a 4xx in its JSON error
 * shape without creating anything. Built in code from the live fleet's ids and keys ({@link Context}), so every case
 * is sent exactly as listed here.
 */
final class HostileCorpus {
    private static final ObjectMapper JSON = new ObjectMapper();

    /** What a case may be answered with. */
    enum Expect {
        /** Any 4xx (a refusal), in the JSON error shape. */
        REFUSED,
        /** Anything but a 5xx (the request is odd but may be served); a 4xx must still be in the JSON error shape. */
        NOT_5XX
    }

    /**
     * @param field a field the answer's {@code errors[].field} must name (equal, or the start of it), or null
     * @param status the exact status wanted, or 0 for any in the class {@code expect} allows
     */
    record Case(String name, String method, String target, List<String[]> headers, byte[] body, boolean utf8Headers,
                Expect expect, int status, String field) {
    }

    /** The fleet's facts the corpus is built from. */
    record Context(String adminKey, String readOnlyKey, String submitOnlyKey, String revokedKey, String forgedKey,
                   String taskId, String otherTenantTaskId, String repo, String agent) {
    }

    private final Context ctx;
    private final List<Case> cases = new ArrayList<>();

    private HostileCorpus(Context ctx) {
        this.ctx = ctx;
    }

    static List<Case> build(Context ctx) {
        HostileCorpus corpus = new HostileCorpus(ctx);
        corpus.malformedBodies();
        corpus.wrongTypesAndValues();
        corpus.unicode();
        corpus.sizes();
        corpus.keys();
        corpus.headerCases();
        corpus.paths();
        corpus.queries();
        corpus.methods();
        return corpus.cases;
    }

    // --- builders -------------------------------------------------------------------------------------------------

    private ObjectNode validTask() {
        ObjectNode task = JSON.createObjectNode().put("description", "hostile corpus").put("repo", ctx.repo());
        task.putArray("cli_assignments").addObject().put("cli_name", ctx.agent()).put("timeout", 60);
        return task;
    }

    private String task(Consumer<ObjectNode> change) {
        ObjectNode task = validTask();
        change.accept(task);
        return task.toString();
    }

    private ObjectNode assignment(ObjectNode task) {
        return (ObjectNode) task.get("cli_assignments").get(0);
    }

    private static List<String[]> headers(String... nameValues) {
        List<String[]> out = new ArrayList<>();
        for (int i = 0; i < nameValues.length; i += 2) {
            out.add(new String[] {nameValues[i], nameValues[i + 1]});
        }
        return out;
    }

    private List<String[]> keyed(String... more) {
        List<String[]> out = headers("X-API-Key", ctx.adminKey(), "Content-Type", "application/json");
        out.addAll(headers(more));
        return out;
    }

    private void add(String name, String method, String target, List<String[]> headers, byte[] body, Expect expect,
                     int status, String field) {
        cases.add(new Case(name, method, target, headers, body, false, expect, status, field));
    }

    private void refuse(String name, String method, String target, String body, String field) {
        add(name, method, target, keyed(), body.getBytes(StandardCharsets.UTF_8), Expect.REFUSED, 0, field);
    }

    private void refuse(String name, String method, String target, byte[] body, String field) {
        add(name, method, target, keyed(), body, Expect.REFUSED, 0, field);
    }

    private void submit(String name, String body, String field) {
        refuse("submit/" + name, "POST", "/api/v1/tasks", body, field);
    }

    private void get(String name, String target, Expect expect, int status, String field) {
        add(name, "GET", target, keyed(), new byte[0], expect, status, field);
    }

    private static byte[] bytes(int... values) {
        byte[] out = new byte[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = (byte) values[i];
        }
        return out;
    }

    private static byte[] concat(String a, byte[] b, String c) {
        byte[] x = a.getBytes(StandardCharsets.UTF_8);
        byte[] z = c.getBytes(StandardCharsets.UTF_8);
        byte[] out = new byte[x.length + b.length + z.length];
        System.arraycopy(x, 0, out, 0, x.length);
        System.arraycopy(b, 0, out, x.length, b.length);
        System.arraycopy(z, 0, out, x.length + b.length, z.length);
        return out;
    }

    // --- the corpus -----------------------------------------------------------------------------------------------

    /** Bodies that are not JSON, or not a JSON object, on every route that reads a body. */
    private void malformedBodies() {
        List<Object[]> bodies = List.of(
                new Object[] {"empty", ""},
                new Object[] {"whitespace", "  \n\t "},
                new Object[] {"unclosed-brace", "{"},
                new Object[] {"close-only", "}"},
                new Object[] {"open-array", "["},
                new Object[] {"missing-value", "{\"description\":}"},
                new Object[] {"trailing-comma", "{\"description\":\"x\",}"},
                new Object[] {"single-quotes", "{'description':'x'}"},
                new Object[] {"unquoted-keys", "{description:\"x\"}"},
                new Object[] {"comment", "/* c */ {\"description\":\"x\"}"},
                new Object[] {"nan", "{\"description\":NaN}"},
                new Object[] {"bare-null", "null"},
                new Object[] {"bare-true", "true"},
                new Object[] {"bare-number", "42"},
                new Object[] {"bare-string", "\"a task\""},
                new Object[] {"bare-array", "[]"},
                new Object[] {"two-objects", "{} {}"},
                new Object[] {"xml", "<task><description>x</description></task>"},
                new Object[] {"form", "description=x&cli_assignments=echo"},
                new Object[] {"yaml", "description: x\ncli_assignments: [echo]\n"},
                new Object[] {"unterminated-string", "{\"description\":\"x"},
                new Object[] {"raw-control-char", "{\"description\":\"a\u0001b\"}"},
                new Object[] {"invalid-utf8", concat("{\"description\":\"", bytes(0xff, 0xfe), "\"}")},
                new Object[] {"overlong-utf8", concat("{\"description\":\"", bytes(0xc0, 0xaf), "\"}")},
                new Object[] {"truncated-utf8", concat("{\"description\":\"", bytes(0xe2, 0x82), "\"}")});
        List<String[]> routes = List.of(
                new String[] {"tasks", "POST", "/api/v1/tasks"},
                new String[] {"batch", "POST", "/api/v1/tasks:batch"},
                new String[] {"keys", "POST", "/api/v1/keys"},
                new String[] {"limits", "PUT", "/api/v1/limits/" + ctx.agent()},
                new String[] {"budgets", "PUT", "/api/v1/budgets/default"});
        for (String[] route : routes) {
            for (Object[] body : bodies) {
                byte[] bytes = body[1] instanceof String s ? s.getBytes(StandardCharsets.UTF_8) : (byte[]) body[1];
                refuse("malformed/" + route[0] + "/" + body[0], route[1], route[2], bytes, null);
            }
        }
        submit("duplicate-key", "{\"description\":\"a\",\"description\":\"b\",\"cli_assignments\":[{\"cli_name\":\""
                + ctx.agent() + "\"}]}", "body");
        submit("trailing-garbage", task(t -> { }) + " trailing", "body");
    }

    private void wrongTypesAndValues() {
        // description
        submit("description/number", task(t -> t.put("description", 42)), "description");
        submit("description/boolean", task(t -> t.put("description", true)), "description");
        submit("description/array", task(t -> t.putArray("description").add("x")), "description");
        submit("description/object", task(t -> t.putObject("description").put("x", 1)), "description");
        submit("description/null", task(t -> t.putNull("description")), "description");
        submit("description/missing", task(t -> t.remove("description")), "description");
        submit("description/empty", task(t -> t.put("description", "")), "description");
        submit("description/blank", task(t -> t.put("description", " \t\n ")), "description");
        // cli_assignments
        submit("assignments/string", task(t -> t.put("cli_assignments", ctx.agent())), "cli_assignments");
        submit("assignments/object", task(t -> t.putObject("cli_assignments").put("cli_name", ctx.agent())), "cli_assignments");
        submit("assignments/number", task(t -> t.put("cli_assignments", 1)), "cli_assignments");
        submit("assignments/empty", task(t -> t.putArray("cli_assignments")), "cli_assignments");
        submit("assignments/missing", task(t -> t.remove("cli_assignments")), "cli_assignments");
        submit("assignments/null", task(t -> t.putNull("cli_assignments")), "cli_assignments");
        submit("assignments/strings", task(t -> t.putArray("cli_assignments").add(ctx.agent())), "cli_assignments[0]");
        submit("assignments/nested-array", task(t -> t.putArray("cli_assignments").addArray()), "cli_assignments[0]");
        submit("assignments/null-entry", task(t -> t.putArray("cli_assignments").addNull()), "cli_assignments[0]");
        submit("assignments/too-many", task(t -> {
            ArrayNode list = t.putArray("cli_assignments");
            for (int i = 0; i < 17; i++) {
                list.addObject().put("cli_name", ctx.agent()).put("timeout", 60);
            }
        }), "cli_assignments");
        submit("assignments/1000", task(t -> {
            ArrayNode list = t.putArray("cli_assignments");
            for (int i = 0; i < 1000; i++) {
                list.addObject().put("cli_name", "agent-" + i);
            }
        }), "cli_assignments");
        submit("assignments/same-agent-twice", task(t -> t.withArray("cli_assignments").addObject()
                .put("cli_name", ctx.agent()).put("timeout", 60)), "cli_assignments[1].cli_name");
        // cli_name
        submit("cli-name/number", task(t -> assignment(t).put("cli_name", 7)), "cli_assignments[0].cli_name");
        submit("cli-name/null", task(t -> assignment(t).putNull("cli_name")), "cli_assignments[0].cli_name");
        submit("cli-name/missing", task(t -> assignment(t).remove("cli_name")), "cli_assignments[0].cli_name");
        submit("cli-name/object", task(t -> assignment(t).putObject("cli_name")), "cli_assignments[0].cli_name");
        for (String[] unknown : new String[][] {{"empty", ""}, {"unknown", "no-such-agent"}, {"upper-case", ctx.agent().toUpperCase()},
                {"leading-space", " " + ctx.agent()}, {"trailing-space", ctx.agent() + " "}, {"nul", ctx.agent() + "\u0000"},
                {"newline", ctx.agent() + "\n"}, {"traversal", "../" + ctx.agent()}, {"absolute-path", "/bin/sh"},
                {"shell", ctx.agent() + "; rm -rf /"}, {"substitution", "$(" + ctx.agent() + ")"},
                {"rtl-override", "\u202e" + ctx.agent()}, {"emoji", "\uD83D\uDE00"}, {"long", "a".repeat(5000)},
                {"template", "{prompt}"}}) {
            submit("cli-name/" + unknown[0], task(t -> assignment(t).put("cli_name", unknown[1])), "cli_assignments[0].cli_name");
        }
        // timeout
        String timeout = "cli_assignments[0].timeout";
        submit("timeout/zero", task(t -> assignment(t).put("timeout", 0)), timeout);
        submit("timeout/negative", task(t -> assignment(t).put("timeout", -1)), timeout);
        submit("timeout/int-min", task(t -> assignment(t).put("timeout", Integer.MIN_VALUE)), timeout);
        submit("timeout/over-a-day", task(t -> assignment(t).put("timeout", 86_401)), timeout);
        submit("timeout/int-max", task(t -> assignment(t).put("timeout", Integer.MAX_VALUE)), timeout);
        submit("timeout/over-int", task(t -> assignment(t).put("timeout", 2_147_483_648L)), timeout);
        submit("timeout/long-max", task(t -> assignment(t).put("timeout", Long.MAX_VALUE)), timeout);
        submit("timeout/fraction", task(t -> assignment(t).put("timeout", 1.5)), timeout);
        submit("timeout/string", task(t -> assignment(t).put("timeout", "60")), timeout);
        submit("timeout/boolean", task(t -> assignment(t).put("timeout", true)), timeout);
        submit("timeout/array", task(t -> assignment(t).putArray("timeout").add(60)), timeout);
        submit("timeout/object", task(t -> assignment(t).putObject("timeout")), timeout);
        submit("timeout/exponent", task(t -> { }).replace("\"timeout\":60", "\"timeout\":1e3"), timeout);
        submit("timeout/huge-exponent", task(t -> { }).replace("\"timeout\":60", "\"timeout\":1e400"), timeout);
        submit("timeout/20-digits", task(t -> { }).replace("\"timeout\":60", "\"timeout\":99999999999999999999"), timeout);
        submit("timeout/negative-zero-fraction", task(t -> { }).replace("\"timeout\":60", "\"timeout\":-0.0"), timeout);
        // priority
        submit("priority/number", task(t -> t.put("priority", 1)), "priority");
        submit("priority/unknown", task(t -> t.put("priority", "urgent")), "priority");
        submit("priority/empty", task(t -> t.put("priority", "")), "priority");
        submit("priority/array", task(t -> t.putArray("priority").add("high")), "priority");
        // repo: traversal, option and transport injection
        for (String[] repo : new String[][] {{"empty", ""}, {"relative", "relative/path"}, {"dot-dot", "../../etc"},
                {"dot", "./repo"}, {"home", "~/repo"}, {"dash-u", "-u"}, {"upload-pack", "--upload-pack=touch /tmp/pwned"},
                {"config-option", "--config=core.sshCommand=touch /tmp/pwned"}, {"ext-transport", "ext::sh -c touch% /tmp/pwned"},
                {"fd-transport", "fd::17"}, {"url-then-option", "https://example.com/r.git --upload-pack=touch"},
                {"newline", ctx.repo() + "\n--upload-pack=x"}, {"nul", ctx.repo() + "\u0000"}, {"tab", "/tmp/a\tb"},
                {"windows", "C:\\repo"}, {"unc", "\\\\server\\share"}, {"too-long", "/" + "a".repeat(2_100)},
                {"javascript", "javascript:alert(1)"}, {"bare-word", "repo"}}) {
            submit("repo/" + repo[0], task(t -> t.put("repo", repo[1])), "repo");
        }
        submit("repo/number", task(t -> t.put("repo", 1)), "repo");
        submit("repo/array", task(t -> t.putArray("repo").add(ctx.repo())), "repo");
        // base_branch: traversal, option injection, shell
        for (String[] branch : new String[][] {{"empty", ""}, {"dash-f", "-f"}, {"upload-pack", "--upload-pack=x"},
                {"dot-dot", "../../etc/passwd"}, {"shell", "main;rm -rf /"}, {"newline", "main\nx"}, {"double-dot", "a..b"},
                {"reflog", "@{-1}"}, {"tilde", "HEAD~1"}, {"refs-traversal", "refs/heads/../x"}, {"lock", "main.lock"},
                {"space", "a b"}, {"emoji", "\uD83D\uDE00"}, {"leading-slash", "/main"}, {"trailing-slash", "main/"},
                {"substitution", "$(touch /tmp/pwned)"}, {"backticks", "`id`"}, {"nul", "main\u0000"}, {"colon", "a:b"},
                {"caret", "main^"}, {"question", "ma?n"}, {"glob", "ma*"}, {"backslash", "ma\\in"}, {"at", "@"}}) {
            submit("branch/" + branch[0], task(t -> t.put("base_branch", branch[1])), "base_branch");
        }
        submit("branch/number", task(t -> t.put("base_branch", 1)), "base_branch");
        // budget
        submit("budget/string", task(t -> t.put("budget", "1000")), "budget");
        submit("budget/array", task(t -> t.putArray("budget")), "budget");
        submit("budget/number", task(t -> t.put("budget", 1000)), "budget");
        submit("budget/max-string", task(t -> t.putObject("budget").put("max_tokens", "1000")), "budget.max_tokens");
        submit("budget/max-zero", task(t -> t.putObject("budget").put("max_tokens", 0)), "budget.max_tokens");
        submit("budget/max-negative", task(t -> t.putObject("budget").put("max_tokens", -5)), "budget.max_tokens");
        submit("budget/max-huge", task(t -> t.putObject("budget").put("max_tokens", 1e30)), "budget.max_tokens");
        submit("budget/max-fraction", task(t -> t.putObject("budget").put("max_tokens", 1.5)), "budget.max_tokens");
        submit("budget/unknown-field", task(t -> t.putObject("budget").put("max_usd", 5)), "budget.max_usd");
        // metadata
        submit("metadata/string", task(t -> t.put("metadata", "x")), "metadata");
        submit("metadata/array", task(t -> t.putArray("metadata")), "metadata");
        submit("metadata/number", task(t -> t.put("metadata", 5)), "metadata");
        submit("metadata/too-big", task(t -> t.putObject("metadata").put("blob", "x".repeat(17_000))), "metadata");
        submit("metadata/nul", task(t -> t.putObject("metadata").put("k", "a\u0000b")), "metadata");
        // batch
        refuse("batch/empty-list", "POST", "/api/v1/tasks:batch", "{\"tasks\": []}", "tasks");
        refuse("batch/not-a-list", "POST", "/api/v1/tasks:batch", "{\"tasks\": {}}", "tasks");
        refuse("batch/missing", "POST", "/api/v1/tasks:batch", "{\"task\": []}", "tasks");
        refuse("batch/one-bad-among-good", "POST", "/api/v1/tasks:batch", "{\"tasks\": [" + task(t -> { }) + ","
                + task(t -> assignment(t).put("timeout", -1)) + "," + task(t -> { }) + "]}", "tasks[1].cli_assignments[0].timeout");
        refuse("batch/null-entry", "POST", "/api/v1/tasks:batch", "{\"tasks\": [" + task(t -> { }) + ", null]}", "tasks[1]");
        StringBuilder tooMany = new StringBuilder("{\"tasks\": [");
        for (int i = 0; i < 1001; i++) {
            tooMany.append(i == 0 ? "" : ",").append(task(t -> { }));
        }
        refuse("batch/1001-tasks", "POST", "/api/v1/tasks:batch", tooMany.append("]}").toString(), "tasks");
        // keys, limits, budgets bodies
        String keys = "/api/v1/keys";
        refuse("keys/tenant-traversal", "POST", keys, "{\"tenant\": \"../x\", \"scopes\": [\"read\"]}", "tenant");
        refuse("keys/tenant-empty", "POST", keys, "{\"tenant\": \"\", \"scopes\": [\"read\"]}", "tenant");
        refuse("keys/tenant-space", "POST", keys, "{\"tenant\": \"a b\", \"scopes\": [\"read\"]}", "tenant");
        refuse("keys/tenant-too-long", "POST", keys, "{\"tenant\": \"" + "a".repeat(65) + "\", \"scopes\": [\"read\"]}", "tenant");
        refuse("keys/tenant-nul", "POST", keys, "{\"tenant\": \"a\\u0000\", \"scopes\": [\"read\"]}", "tenant");
        refuse("keys/tenant-number", "POST", keys, "{\"tenant\": 5, \"scopes\": [\"read\"]}", "tenant");
        refuse("keys/scope-unknown", "POST", keys, "{\"tenant\": \"acme\", \"scopes\": [\"read\", \"root\"]}", "scopes[1]");
        refuse("keys/scopes-string", "POST", keys, "{\"tenant\": \"acme\", \"scopes\": \"read\"}", "scopes");
        refuse("keys/scopes-empty", "POST", keys, "{\"tenant\": \"acme\", \"scopes\": []}", "scopes");
        refuse("keys/name-too-long", "POST", keys, "{\"tenant\": \"acme\", \"name\": \"" + "n".repeat(101)
                + "\", \"scopes\": [\"read\"]}", "name");
        refuse("keys/unknown-field", "POST", keys, "{\"tenant\": \"acme\", \"scopes\": [\"read\"], \"key\": \"kb_mine\"}", "key");
        String limits = "/api/v1/limits/" + ctx.agent();
        refuse("limits/requests-negative", "PUT", limits, "{\"requests\": -1}", "requests");
        refuse("limits/requests-string", "PUT", limits, "{\"requests\": \"5\"}", "requests");
        refuse("limits/requests-huge", "PUT", limits, "{\"requests\": 1e30}", "requests");
        refuse("limits/window-zero", "PUT", limits, "{\"window_seconds\": 0}", "window_seconds");
        refuse("limits/window-huge", "PUT", limits, "{\"window_seconds\": 1e12}", "window_seconds");
        refuse("limits/tokens-negative", "PUT", limits, "{\"tokens\": -5}", "tokens");
        refuse("limits/guard-negative", "PUT", limits, "{\"guard_ms\": -1}", "guard_ms");
        refuse("limits/unknown-field", "PUT", limits, "{\"bogus\": 1}", "bogus");
        refuse("limits/unknown-agent", "PUT", "/api/v1/limits/no-such-agent", "{\"requests\": 5}", null);
        String budgets = "/api/v1/budgets/default";
        refuse("budgets/negative", "PUT", budgets, "{\"tokens_per_day\": -1}", "tokens_per_day");
        refuse("budgets/string", "PUT", budgets, "{\"tokens_per_month\": \"lots\"}", "tokens_per_month");
        refuse("budgets/usd-negative", "PUT", budgets, "{\"usd_per_day\": -0.01}", "usd_per_day");
        refuse("budgets/usd-huge", "PUT", budgets, "{\"usd_per_month\": 1e400}", "usd_per_month");
        refuse("budgets/unknown-field", "PUT", budgets, "{\"tokens_per_year\": 5}", "tokens_per_year");
        refuse("budgets/tenant-traversal", "PUT", "/api/v1/budgets/..%2F..%2Fetc", "{\"tokens_per_day\": 5}", null);
        refuse("budgets/tenant-space", "PUT", "/api/v1/budgets/a%20b", "{\"tokens_per_day\": 5}", null);
    }

    private void unicode() {
        submit("unicode/nul-in-description", task(t -> t.put("description", "before\u0000after")), "description");
        submit("unicode/only-nul", task(t -> t.put("description", "\u0000")), "description");
        submit("unicode/lone-high-surrogate", task(t -> { }).replace("hostile corpus", "lone \\ud800 high"), "description");
        submit("unicode/lone-low-surrogate", task(t -> { }).replace("hostile corpus", "lone \\udfff low"), "description");
        submit("unicode/reversed-pair", task(t -> { }).replace("hostile corpus", "\\ude00\\ud83d"), "description");
        submit("unicode/high-at-end", task(t -> { }).replace("hostile corpus", "ends with \\ud83d"), "description");
        submit("unicode/surrogate-in-metadata", task(t -> { }).replace("\"repo\"", "\"metadata\":{\"k\":\"\\ud800\"},\"repo\""),
                "metadata");
        submit("unicode/surrogate-in-repo", task(t -> t.put("repo", "/tmp/x")).replace("/tmp/x", "/tmp/\\udc00"), "repo");
        submit("unicode/bom-only", task(t -> t.put("description", "\uFEFF")), "description");
        submit("unicode/zero-width-only", task(t -> t.put("description", "\u200B\u200C\u200D")), "description");
    }

    private void sizes() {
        submit("size/description-100001", task(t -> t.put("description", "d".repeat(100_001))), "description");
        add("size/body-2MiB", "POST", "/api/v1/tasks", keyed(),
                task(t -> t.put("description", "d".repeat(2 * 1024 * 1024))).getBytes(StandardCharsets.UTF_8), Expect.REFUSED, 413, null);
        add("size/body-1MiB-whitespace", "POST", "/api/v1/tasks", keyed(),
                (" ".repeat(1024 * 1024 + 1) + task(t -> { })).getBytes(StandardCharsets.UTF_8), Expect.REFUSED, 413, null);
        add("size/batch-5MiB", "POST", "/api/v1/tasks:batch", keyed(),
                ("{\"tasks\": [" + task(t -> t.put("description", "d".repeat(5 * 1024 * 1024))) + "]}").getBytes(StandardCharsets.UTF_8),
                Expect.REFUSED, 413, null);
        add("size/keys-2MiB", "POST", "/api/v1/keys", keyed(),
                ("{\"tenant\": \"" + "t".repeat(2 * 1024 * 1024) + "\"}").getBytes(StandardCharsets.UTF_8), Expect.REFUSED, 413, null);
        submit("nesting/metadata-40", task(t -> {
            ObjectNode node = t.putObject("metadata");
            for (int i = 0; i < 40; i++) {
                node = node.putObject("n");
            }
        }), null);
        submit("nesting/arrays-100000", "[".repeat(100_000) + "]".repeat(100_000), "body");
        submit("nesting/objects-10000", "{\"a\":".repeat(10_000) + "1" + "}".repeat(10_000), "body");
        refuse("nesting/keys-arrays-50000", "POST", "/api/v1/keys", "[".repeat(50_000) + "]".repeat(50_000), "body");
        refuse("nesting/limits-objects-50000", "PUT", "/api/v1/limits/" + ctx.agent(),
                "{\"requests\":".repeat(50_000) + "1" + "}".repeat(50_000), null);
        submit("number/500000-digits", task(t -> { }).replace("\"timeout\":60", "\"timeout\":1" + "0".repeat(500_000)), null);
        submit("string/many-escapes", task(t -> t.put("description", "\u0001".repeat(100_001))), "description");
        submit("fields/20000-unknown", "{" + java.util.stream.IntStream.range(0, 20_000).mapToObj(i -> "\"f" + i + "\":" + i)
                .reduce((a, b) -> a + "," + b).orElseThrow() + "}", null);
    }

    private void keys() {
        List<String[]> routes = List.of(
                new String[] {"GET", "/api/v1/tasks"}, new String[] {"POST", "/api/v1/tasks"},
                new String[] {"POST", "/api/v1/tasks:batch"}, new String[] {"GET", "/api/v1/tasks/" + ctx.taskId()},
                new String[] {"GET", "/api/v1/tasks/" + ctx.taskId() + "/events"},
                new String[] {"POST", "/api/v1/tasks/" + ctx.taskId() + "/cancel"}, new String[] {"GET", "/api/v1/events"},
                new String[] {"GET", "/api/v1/queues"}, new String[] {"GET", "/api/v1/workers"},
                new String[] {"GET", "/api/v1/limits"}, new String[] {"PUT", "/api/v1/limits/" + ctx.agent()},
                new String[] {"GET", "/api/v1/budgets"}, new String[] {"PUT", "/api/v1/budgets/default"},
                new String[] {"GET", "/api/v1/reports/budget-violations"}, new String[] {"GET", "/api/v1/dead-letters"},
                new String[] {"POST", "/api/v1/dead-letters/1-0/replay"}, new String[] {"GET", "/api/v1/keys"},
                new String[] {"POST", "/api/v1/keys"}, new String[] {"DELETE", "/api/v1/keys/1"});
        byte[] body = task(t -> { }).getBytes(StandardCharsets.UTF_8);
        for (String[] route : routes) {
            String name = route[0] + " " + route[1].replace(ctx.taskId(), "{id}");
            byte[] sent = route[0].equals("GET") || route[0].equals("DELETE") ? new byte[0] : body;
            add("key/missing/" + name, route[0], route[1], headers("Content-Type", "application/json"), sent,
                    Expect.REFUSED, 401, null);
            add("key/forged/" + name, route[0], route[1], headers("X-API-Key", ctx.forgedKey(), "Content-Type",
                    "application/json"), sent, Expect.REFUSED, 401, null);
            add("key/revoked/" + name, route[0], route[1], headers("X-API-Key", ctx.revokedKey(), "Content-Type",
                    "application/json"), sent, Expect.REFUSED, 401, null);
        }
        add("key/empty", "GET", "/api/v1/tasks", headers("X-API-Key", ""), new byte[0], Expect.REFUSED, 401, null);
        add("key/blank", "GET", "/api/v1/tasks", headers("X-API-Key", "    "), new byte[0], Expect.REFUSED, 401, null);
        add("key/10KiB", "GET", "/api/v1/tasks", headers("X-API-Key", "k".repeat(10_240)), new byte[0], Expect.REFUSED, 0, null);
        cases.add(new Case("key/non-ascii", "GET", "/api/v1/tasks", headers("X-API-Key", "ключ-ключ-ключ"), new byte[0], true,
                Expect.REFUSED, 401, null));
        add("key/latin1-bytes", "GET", "/api/v1/tasks", headers("X-API-Key", "k\u00ff\u00fe-key-12345"), new byte[0],
                Expect.REFUSED, 401, null);
        add("key/bearer-instead", "GET", "/api/v1/tasks", headers("Authorization", "Bearer " + ctx.adminKey()), new byte[0],
                Expect.REFUSED, 401, null);
        add("key/query-instead", "GET", "/api/v1/tasks?api_key=" + ctx.adminKey(), headers(), new byte[0], Expect.REFUSED, 401, null);
        add("key/valid-with-suffix", "GET", "/api/v1/tasks", headers("X-API-Key", ctx.adminKey() + "x"), new byte[0],
                Expect.REFUSED, 401, null);
        add("key/prefix-of-valid", "GET", "/api/v1/tasks", headers("X-API-Key", ctx.adminKey().substring(0, 8)), new byte[0],
                Expect.REFUSED, 401, null);
        add("key/sql-injection", "GET", "/api/v1/tasks", headers("X-API-Key", "' OR '1'='1"), new byte[0], Expect.REFUSED, 401, null);
        add("key/forged-then-valid", "GET", "/api/v1/tasks", headers("X-API-Key", ctx.forgedKey(), "X-API-Key", ctx.adminKey()),
                new byte[0], Expect.NOT_5XX, 0, null);
        // scopes
        List<String[]> readOnly = headers("X-API-Key", ctx.readOnlyKey(), "Content-Type", "application/json");
        List<String[]> submitOnly = headers("X-API-Key", ctx.submitOnlyKey(), "Content-Type", "application/json");
        add("scope/read-key-submits", "POST", "/api/v1/tasks", readOnly, body, Expect.REFUSED, 403, null);
        add("scope/read-key-batch", "POST", "/api/v1/tasks:batch", readOnly,
                ("{\"tasks\": [" + task(t -> { }) + "]}").getBytes(StandardCharsets.UTF_8), Expect.REFUSED, 403, null);
        add("scope/read-key-cancels", "POST", "/api/v1/tasks/" + ctx.taskId() + "/cancel", readOnly, new byte[0],
                Expect.REFUSED, 403, null);
        add("scope/submit-key-reads", "GET", "/api/v1/tasks", submitOnly, new byte[0], Expect.REFUSED, 403, null);
        add("scope/submit-key-lists-keys", "GET", "/api/v1/keys", submitOnly, new byte[0], Expect.REFUSED, 403, null);
        add("scope/submit-key-creates-key", "POST", "/api/v1/keys", submitOnly,
                "{\"tenant\": \"evil\", \"scopes\": [\"admin\"]}".getBytes(StandardCharsets.UTF_8), Expect.REFUSED, 403, null);
        add("scope/submit-key-revokes", "DELETE", "/api/v1/keys/1", submitOnly, new byte[0], Expect.REFUSED, 403, null);
        add("scope/submit-key-sets-limit", "PUT", "/api/v1/limits/" + ctx.agent(), submitOnly,
                "{\"requests\": 1}".getBytes(StandardCharsets.UTF_8), Expect.REFUSED, 403, null);
        add("scope/submit-key-sets-budget", "PUT", "/api/v1/budgets/default", submitOnly,
                "{\"tokens_per_day\": 1}".getBytes(StandardCharsets.UTF_8), Expect.REFUSED, 403, null);
        add("scope/read-key-deletes-budget", "DELETE", "/api/v1/budgets/default", readOnly, new byte[0], Expect.REFUSED, 403, null);
        // another tenant's task
        get("tenant/other-task", "/api/v1/tasks/" + ctx.otherTenantTaskId(), Expect.REFUSED, 404, null);
        get("tenant/other-task-events", "/api/v1/tasks/" + ctx.otherTenantTaskId() + "/events", Expect.REFUSED, 404, null);
        add("tenant/other-task-cancel", "POST", "/api/v1/tasks/" + ctx.otherTenantTaskId() + "/cancel", keyed(), new byte[0],
                Expect.REFUSED, 404, null);
    }

    private void headerCases() {
        // Header injection: nothing the caller sends may come back as a header of its own.
        get("inject/path-crlf", "/api/v1/tasks/%0d%0aX-Injected:%20yes", Expect.REFUSED, 0, null);
        get("inject/query-crlf", "/api/v1/tasks?status=%0d%0aX-Injected:%20yes", Expect.REFUSED, 400, "status");
        get("inject/cursor-crlf", "/api/v1/tasks?cursor=%0d%0aX-Injected:%20yes", Expect.REFUSED, 400, "cursor");
        get("inject/limits-agent-crlf", "/api/v1/limits/x%0d%0aX-Injected:%20yes", Expect.REFUSED, 404, null);
        add("inject/cancel-crlf", "POST", "/api/v1/tasks/%0d%0aX-Injected:%20yes/cancel", keyed(), new byte[0],
                Expect.REFUSED, 0, null);
        byte[] valid = task(t -> { }).getBytes(StandardCharsets.UTF_8);
        for (String[] key : new String[][] {{"201-chars", "i".repeat(201)}, {"tab", "a\tb"}, {"latin1", "cl\u00e9"}}) {
            add("idempotency-key/" + key[0], "POST", "/api/v1/tasks", keyed("Idempotency-Key", key[1]), valid,
                    Expect.REFUSED, 400, "Idempotency-Key");
        }
        // Control characters in a header value: refused by the HTTP layer before any route, so no field to name.
        for (String[] key : new String[][] {{"del", "a\u007fb"}, {"escape", "a\u001b[31mred"}}) {
            add("idempotency-key/" + key[0], "POST", "/api/v1/tasks", keyed("Idempotency-Key", key[1]), valid,
                    Expect.REFUSED, 400, null);
        }
        cases.add(new Case("idempotency-key/utf8", "POST", "/api/v1/tasks", keyed("Idempotency-Key", "ключ"), valid, true,
                Expect.REFUSED, 400, "Idempotency-Key"));
        // Last-Event-ID on both event streams
        for (String[] id : new String[][] {{"word", "yesterday"}, {"negative", "-1"}, {"huge", "99999999999999999999-0"},
                {"three-parts", "1-2-3"}, {"dangling-dash", "1-"}, {"leading-dash", "-0"}, {"fullwidth", "１-0"},
                {"long", "1".repeat(5000) + "-0"}, {"rtl", "1-0\u202e"}, {"space-inside", "1 -0"}, {"sql", "1-0' OR 1=1--"}}) {
            cases.add(new Case("last-event-id/task/" + id[0], "GET", "/api/v1/tasks/" + ctx.taskId() + "/events",
                    keyed("Last-Event-ID", id[1], "Accept", "text/event-stream"), new byte[0], true, Expect.REFUSED, 400,
                    "Last-Event-ID"));
            cases.add(new Case("last-event-id/tenant/" + id[0], "GET", "/api/v1/events",
                    keyed("Last-Event-ID", id[1], "Accept", "text/event-stream"), new byte[0], true, Expect.REFUSED, 400,
                    "Last-Event-ID"));
        }
        // Framing: a short Content-Length, a malformed chunk, and both framings at once (request smuggling)
        add("framing/short-content-length", "POST", "/api/v1/tasks", keyed("Content-Length", "10"), valid,
                Expect.REFUSED, 400, "body");
        add("framing/bad-chunk-size", "POST", "/api/v1/tasks", keyed("Transfer-Encoding", "chunked"),
                "zz\r\n{}\r\n0\r\n\r\n".getBytes(StandardCharsets.US_ASCII), Expect.REFUSED, 0, null);
        add("framing/content-length-and-chunked", "POST", "/api/v1/tasks",
                keyed("Content-Length", "4", "Transfer-Encoding", "chunked"),
                "0\r\n\r\nPOST /api/v1/tasks HTTP/1.1\r\n\r\n".getBytes(StandardCharsets.US_ASCII), Expect.REFUSED, 0, null);
        add("framing/negative-content-length", "POST", "/api/v1/tasks", keyed("Content-Length", "-1"), valid,
                Expect.REFUSED, 0, null);
        add("framing/multipart-without-parts", "POST", "/api/v1/tasks",
                headers("X-API-Key", ctx.adminKey(), "Content-Type", "multipart/form-data; boundary=x"),
                "--x\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\nhi\r\n--x--\r\n".getBytes(StandardCharsets.US_ASCII),
                Expect.REFUSED, 0, null);
        add("framing/form-encoded-fields", "POST", "/api/v1/tasks",
                headers("X-API-Key", ctx.adminKey(), "Content-Type", "application/x-www-form-urlencoded"),
                ("description=x&cli_assignments[0][cli_name]=" + ctx.agent()).getBytes(StandardCharsets.US_ASCII),
                Expect.REFUSED, 400, "body");
    }

    private void paths() {
        for (String[] id : new String[][] {{"not-a-uuid", "not-a-uuid"}, {"traversal", "..%2F..%2Fetc%2Fpasswd"},
                {"dot-dot", ".."}, {"zero-uuid", "00000000-0000-0000-0000-000000000000"}, {"uuid-with-suffix", ctx.taskId() + "x"},
                {"sql", "1'%20OR%20'1'='1"}, {"nul", "%00"}, {"long", "a".repeat(4000)}, {"percent-garbage", "%zz"},
                {"unicode", "%E2%80%AE"}}) {
            get("path/task/" + id[0], "/api/v1/tasks/" + id[1], Expect.REFUSED, 0, null);
            add("path/cancel/" + id[0], "POST", "/api/v1/tasks/" + id[1] + "/cancel", keyed(), new byte[0], Expect.REFUSED, 0, null);
            get("path/events/" + id[0], "/api/v1/tasks/" + id[1] + "/events", Expect.REFUSED, 0, null);
        }
        get("path/limits/traversal", "/api/v1/limits/..%2F..%2Fetc", Expect.REFUSED, 404, null);
        get("path/limits/nul", "/api/v1/limits/%00", Expect.REFUSED, 404, null);
        get("path/limits/unknown", "/api/v1/limits/no-such-agent", Expect.REFUSED, 404, null);
        add("path/limits/delete-unknown", "DELETE", "/api/v1/limits/no-such-agent", keyed(), new byte[0], Expect.REFUSED, 404, null);
        get("path/budgets/traversal", "/api/v1/budgets/..%2F..%2Fetc", Expect.REFUSED, 0, null);
        for (String[] id : new String[][] {{"word", "abc"}, {"negative", "-1"}, {"huge", "99999999999999999999"},
                {"fraction", "1.5"}, {"zero", "0"}, {"unknown", "987654321"}}) {
            add("path/keys-delete/" + id[0], "DELETE", "/api/v1/keys/" + id[1], keyed(), new byte[0], Expect.REFUSED, 0, null);
        }
        for (String[] id : new String[][] {{"word", "abc"}, {"traversal", "..%2F..%2Fx"}, {"unknown", "1-0"}}) {
            add("path/replay/" + id[0], "POST", "/api/v1/dead-letters/" + id[1] + "/replay", keyed(), new byte[0],
                    Expect.REFUSED, 404, null);
        }
    }

    private void queries() {
        for (String[] q : new String[][] {{"limit", "0"}, {"limit", "-1"}, {"limit", "101"}, {"limit", "abc"}, {"limit", "1e2"},
                {"limit", "99999999999999999999"}, {"limit", "1.5"}, {"limit", "%00"}, {"status", "bogus"}, {"status", "completed,bogus"},
                {"status", "%27%20OR%201=1"}, {"since", "notadate"}, {"since", "2025-13-45T00:00:00Z"}, {"since", "2025-01-01"},
                {"since", "-999999999-01-01T00:00:00Z"}, {"since", "%2B999999999-12-31T23:59:59Z"}, {"since", "0000-01-01T00:00:00Z"}, {"cursor", "garbage"}, {"cursor", "%00%01"}, {"cursor", "A".repeat(1500)}}) {
            get("query/tasks/" + q[0] + "=" + abbreviate(q[1]), "/api/v1/tasks?" + q[0] + "=" + q[1], Expect.REFUSED, 400, q[0]);
        }
        get("query/tasks/limit-twice", "/api/v1/tasks?limit=1&limit=2", Expect.REFUSED, 400, "limit");
        get("query/tasks/unknown-agent", "/api/v1/tasks?agent=no-such-agent", Expect.NOT_5XX, 0, null);
        for (String report : List.of("budget-violations", "rate-limit-failures", "cost-anomalies")) {
            for (String days : List.of("0", "367", "abc", "-1", "1.5", "99999999999999999999")) {
                get("query/" + report + "/days=" + days, "/api/v1/reports/" + report + "?days=" + days, Expect.REFUSED, 400, "days");
            }
        }
        for (String limit : List.of("0", "501", "x")) {
            get("query/cost-anomalies/limit=" + limit, "/api/v1/reports/cost-anomalies?limit=" + limit, Expect.REFUSED, 400, "limit");
        }
        for (String limit : List.of("0", "201", "x")) {
            get("query/recent-errors/limit=" + limit, "/api/v1/reports/recent-errors?limit=" + limit, Expect.REFUSED, 400, "limit");
        }
        for (String limit : List.of("abc", "99999999999999999999", "1.5")) {
            get("query/dead-letters/limit=" + limit, "/api/v1/dead-letters?limit=" + limit, Expect.REFUSED, 400, "limit");
        }
        get("query/keys/tenant-traversal", "/api/v1/keys?tenant=..%2Fx", Expect.REFUSED, 400, "tenant");
    }

    private void methods() {
        for (String[] m : new String[][] {{"PATCH", "/api/v1/tasks"}, {"DELETE", "/api/v1/tasks"}, {"PUT", "/api/v1/tasks"},
                {"GET", "/api/v1/tasks:batch"}, {"GET", "/api/v1/nope"}, {"GET", "/api/v2/tasks"},
                {"POST", "/api/v1/tasks/x/y/z"}, {"POST", "/api/v1/queues"}, {"DELETE", "/api/v1/workers"}}) {
            add("method/" + m[0] + " " + m[1], m[0], m[1], keyed(), new byte[0], Expect.REFUSED, 0, null);
        }
    }

    private static String abbreviate(String value) {
        return value.length() > 20 ? value.substring(0, 8) + "…(" + value.length() + ")" : value;
    }
}
