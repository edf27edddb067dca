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
        assertThatThrownBy(() -> AgentCatalog.load(dir.resolve("missing.yml"))).hasMessageContaining("file not found");
    }

    private AgentCatalog load(String yaml) throws IOException {
        Path file = dir.resolve("agents-" + System.nanoTime() + ".yml");
        Files.writeString(file, yaml);
        return AgentCatalog.load(file);
    }
}
