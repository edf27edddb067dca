package dev.kage.agent;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kage.config.ConfigException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class AgentCatalogTest {
    @TempDir
    Path dir;

    @Test
    void theBundledAgentsFileLoadsAndResolvesTheDemoAgentBesideIt() {
        Path file = Path.of("..", "ops", "agents", "agents.yml").toAbsolutePath().normalize();
        AgentCatalog catalog = AgentCatalog.load(file);
        assertThat(catalog.names()).contains("claude-code", "demo");
        AgentConfig claude = catalog.require("claude-code");
        assertThat(claude.output()).isEqualTo(OutputFormat.CLAUDE_JSON);
        assertThat(claude.executable()).isEqualTo(file.getParent().resolve("demo-agent"));
        assertThat(claude.locateExecutable(System.getenv("PATH"))).isPresent();
    }

    @Test
    void placeholdersAreReplacedOnceAndThePromptStaysOneArgument() throws IOException {
        AgentConfig agent = load("""
                agents:
                  echo:
                    argv: ["/bin/echo", "--task={task_id}", "{prompt}", "{agent}"]
                    model: m1
                """).require("echo");
        String prompt = "fix it; rm -rf / $(id) `whoami` {task_id} \"quoted\"\nsecond line";
        List<String> argv = agent.render(prompt, "T1", dir);
        assertThat(argv).containsExactly("/bin/echo", "--task=T1", prompt, "echo");
    }

    @Test
    void aPromptThatBeginsWithADashIsNeverReadAsAnOptionOfTheAgentsCommand() throws Exception {
        // A tenant's description decides the prompt, never the options of the command the operator configured. coreutils'
        // echo reads a lone --version or --help as its option: a real process shows which way the element was read.
        AgentConfig agent = load("""
                agents:
                  echo:
                    argv: ["/bin/echo", "{prompt}", "-n", "--tag={prompt}"]
                """).require("echo");
        for (String prompt : List.of("--version", "--help", "-e \\x41", "-")) {
            List<String> argv = agent.render(prompt, "T1", dir);
            assertThat(argv).containsExactly("/bin/echo", " " + prompt, "-n", "--tag=" + prompt);
            Process echo = new ProcessBuilder(argv.subList(0, 2)).redirectErrorStream(true).start();
            String out = new String(echo.getInputStream().readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
            assertThat(echo.waitFor()).isZero();
            assertThat(out).as(prompt).isEqualTo(" " + prompt + "\n");
        }
        assertThat(agent.render("- a list item", "T1", dir).get(1)).isEqualTo(" - a list item");
        assertThat(agent.render("fix -v", "T1", dir).get(1)).as("only a leading dash").isEqualTo("fix -v");
    }

    @Test
    void bareProgramNamesAreLookedUpOnPath() throws IOException {
        AgentConfig agent = load("""
                agents:
                  sh-agent:
                    argv: ["sh", "{prompt}"]
                """).require("sh-agent");
        assertThat(agent.locateExecutable("/nonexistent:/bin:/usr/bin")).isPresent();
        assertThat(agent.locateExecutable("/nonexistent")).isEmpty();
        assertThat(agent.output()).isEqualTo(OutputFormat.TEXT);
        assertThat(agent.encoding()).isEqualTo("o200k_base");
    }

    @Test
    void aNoopAgentNeedsNoArgvAndIgnoresOne() throws IOException {
        AgentCatalog catalog = load("""
                agents:
                  bench:
                    type: noop
                  bench-with-argv:
                    type: noop
                    argv: ["no-such-program"]
                """);
        assertThat(catalog.require("bench").type()).isEqualTo(AgentType.NOOP);
        assertThat(catalog.require("bench").argv()).isEmpty();
        assertThat(catalog.require("bench-with-argv").argv()).isEmpty();
    }

    @Test
    void misconfiguredAgentsFailWithTheVariableTheAgentAndTheProblem() throws IOException {
        assertThatThrownBy(() -> load("agents: {}\n")).isInstanceOf(ConfigException.class)
                .hasMessageContaining("KAGE_AGENTS_FILE=").hasMessageContaining("non-empty 'agents:' mapping");
        assertThatThrownBy(() -> load("agents:\n  Bad Name:\n    argv: [x, '{prompt}']\n"))
                .hasMessageContaining("agent 'Bad Name': name must be lower-case");
        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: []\n")).hasMessageContaining("agent 'a': argv must be a non-empty list");
        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: [x]\n")).hasMessageContaining("must pass the task description");
        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: [x, '{prompt}']\n    output: xml\n"))
                .hasMessageContaining("unknown output format 'xml'");
        assertThatThrownBy(() -> load("agents:\n  a:\n    type: shell\n    argv: [x, '{prompt}']\n"))
                .hasMessageContaining("unknown agent type 'shell'");
        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: [x, '{prompt}']\n    comand: y\n"))
                .hasMessageContaining("unknown setting 'comand'");
        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: [x, '{prompt}']\n    env: ['A-B']\n"))
                .hasMessageContaining("'A-B' is not an environment variable name");
        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: [x, '{prompt}']\n    encoding: gpt9\n"))
                .hasMessageContaining("encoding 'gpt9' is unknown");
        assertThatThrownBy(() -> load("agents: [unclosed\n")).hasMessageContaining("cannot be read as YAML");
        // Numbers a setting cannot take whole: read as something else (1.5 as 1, 2^64 + 5 as 5), or failing after a run.
        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: [x, '{prompt}']\n    estimated_output_tokens: 1.5\n"))
                .hasMessageContaining("estimated_output_tokens=1.5: must be a whole number from 1 to");
        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: [x, '{prompt}']\n    estimated_output_tokens: 18446744073709551621\n"))
                .hasMessageContaining("must be a whole number");
        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: [x, '{prompt}']\n    retry: {max_attempts: 4294967297}\n"))
                .hasMessageContaining("retry.max_attempts=");
        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: [x, '{prompt}']\n    prices: {input_per_mtok: .inf}\n"))
                .hasMessageContaining("must be a number of USD per 1M tokens from 0 to");
        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: [x, '{prompt}']\n    budget: {usd_per_day: 1e300}\n"))
                .hasMessageContaining("budget.usd_per_day=").hasMessageContaining("at most 1000000000");
        assertThatThrownBy(() -> AgentCatalog.load(dir.resolve("missing.yml"))).hasMessageContaining("file not found");
    }

    private AgentCatalog load(String yaml) throws IOException {
        Path file = dir.resolve("agents-" + System.nanoTime() + ".yml");
        Files.writeString(file, yaml);
        return AgentCatalog.load(file);
    }

    @Test
    void pricesIncludingCacheTokensAndAnAgentsOwnBudgetAreRead() throws IOException {
        AgentConfig agent = load("""
                agents:
                  priced:
                    argv: ["sh", "{prompt}"]
                    prices: {input_per_mtok: 3.0, output_per_mtok: 15.0, cache_read_per_mtok: 0.3}
                    budget: {tokens_per_day: 2000000, usd_per_month: 125.5}
                """).require("priced");
        assertThat(agent.prices()).isEqualTo(new dev.kage.tokens.Prices(3.0, 15.0, 0.3, 3.0));
        assertThat(agent.prices().cost(1_000_000, 100_000, 1_000_000, 0)).isEqualByComparingTo("4.8");
        assertThat(agent.budget()).isEqualTo(new dev.kage.budget.PeriodLimits(2_000_000, 0, 0, 125_500_000));
        assertThat(load("agents:\n  plain:\n    argv: [sh, '{prompt}']\n").require("plain").budget().isNone()).isTrue();

        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: [sh, '{prompt}']\n    budget: {tokens_per_week: 5}\n"))
                .hasMessageContaining("agent 'a': budget.tokens_per_week is unknown");
        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: [sh, '{prompt}']\n    budget: {usd_per_day: -3}\n"))
                .hasMessageContaining("budget.usd_per_day=-3");
        assertThatThrownBy(() -> load("agents:\n  a:\n    argv: [sh, '{prompt}']\n    prices: {input: 3}\n"))
                .hasMessageContaining("prices.input is unknown");
    }

    @Test
    void agentsBillingOneAccountShareALimitGroupWithTheFleetDefaultsFilledIn() throws IOException {
        AgentCatalog catalog = load("""
                agents:
                  claude-code:
                    argv: ["sh", "{prompt}"]
                    limits: {group: anthropic-org, requests: 40, window_seconds: 2, guard_ms: 100}
                    rate_limit_signals: {exit_codes: [75], patterns: ["slow down"]}
                  claude-api:
                    type: anthropic
                    base_url: http://127.0.0.1:9/
                    api_key_env: ANTHROPIC_API_KEY
                    model: claude-sonnet
                    limits: {group: anthropic-org, tokens: 80000}
                  codex:
                    argv: ["sh", "{prompt}"]
                """);
        dev.kage.config.RateLimitSettings defaults = dev.kage.config.KageSettings.load(dev.kage.config.Env.of(
                java.util.Map.of("MAX_REQUESTS_PER_MINUTE", "30"))).rateLimit();
        var groups = catalog.limitGroups(defaults);
        assertThat(groups).containsOnlyKeys("anthropic-org", "codex");
        assertThat(groups.get("anthropic-org")).isEqualTo(new dev.kage.ratelimit.Limit(40, java.time.Duration.ofSeconds(2), 80_000,
                java.time.Duration.ofMillis(100)));
        assertThat(groups.get("codex")).isEqualTo(new dev.kage.ratelimit.Limit(30, java.time.Duration.ofMinutes(1), 0,
                java.time.Duration.ofSeconds(1)));
        AgentConfig api = catalog.require("claude-api");
        assertThat(api.endpoint().baseUrl()).isEqualTo("http://127.0.0.1:9");
        assertThat(api.envPassthrough()).as("the key variable is passed, so its value is redacted").contains("ANTHROPIC_API_KEY");
        AgentLimits signals = catalog.require("claude-code").limits();
        assertThat(signals.signalled(75, "")).isTrue();
        assertThat(signals.signalled(1, "please slow down")).isTrue();
        assertThat(signals.signalled(1, "429")).as("its own patterns replace the defaults").isFalse();
        AgentLimits codex = catalog.require("codex").limits();
        assertThat(codex.signalled(1, "Error: 429 Too Many Requests")).isTrue();
        assertThat(codex.signalled(1, "API Error: {\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\"}}")).isTrue();
        assertThat(codex.signalled(1, "stream error: status: 429, retry later")).isTrue();
        assertThat(codex.signalled(1, "[API Error: RESOURCE_EXHAUSTED quota]")).isTrue();
        assertThat(codex.signalled(1, "Rate limit exceeded for model")).isTrue();
        assertThat(codex.signalled(1, "FAILED at FooTest.java:429 in class RateLimiterTest: expected 429 got 200"))
                .as("a failing test about rate limits is not a rate-limit signal").isFalse();
        assertThat(AgentLimits.retryAfter("HTTP 429, retry-after: 2.5")).contains(java.time.Duration.ofMillis(2_500));
    }

    @Test
    void conflictingLimitsInOneGroupAndBadLimitSettingsFailStartUpNamingThem() {
        assertThatThrownBy(() -> load("""
                agents:
                  a:
                    argv: ["sh", "{prompt}"]
                    limits: {group: shared, requests: 10}
                  b:
                    argv: ["sh", "{prompt}"]
                    limits: {group: shared, requests: 20}
                """)).isInstanceOf(ConfigException.class).hasMessageContaining("'a' and 'b' share limit group 'shared'");
        assertThatThrownBy(() -> load("""
                agents:
                  a:
                    argv: ["sh", "{prompt}"]
                    limits: {requests: 0}
                """)).isInstanceOf(ConfigException.class).hasMessageContaining("limits.requests=0");
        assertThatThrownBy(() -> load("""
                agents:
                  a:
                    argv: ["sh", "{prompt}"]
                    rate_limit_signals: {patterns: ["("]}
                """)).isInstanceOf(ConfigException.class).hasMessageContaining("is not a regular expression");
        assertThatThrownBy(() -> load("""
                agents:
                  api:
                    type: openai-compatible
                    base_url: "file:///etc/passwd"
                    model: m
                """)).isInstanceOf(ConfigException.class).hasMessageContaining("must be an http:// or https:// URL");
        assertThatThrownBy(() -> load("""
                agents:
                  api:
                    type: openai-compatible
                    base_url: http://127.0.0.1:9/v1
                """)).isInstanceOf(ConfigException.class).hasMessageContaining("model is required");
    }
}
