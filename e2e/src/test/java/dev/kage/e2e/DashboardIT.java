package dev.kage.e2e;

import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.ObjectMapper;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.openqa.selenium.By;
import org.openqa.selenium.OutputType;
import org.openqa.selenium.TakesScreenshot;
import org.openqa.selenium.WebDriver;
import org.openqa.selenium.WebElement;
import org.openqa.selenium.chrome.ChromeDriver;
import org.openqa.selenium.chrome.ChromeDriverService;
import org.openqa.selenium.chrome.ChromeOptions;
import org.openqa.selenium.support.ui.ExpectedConditions;
import org.openqa.selenium.support.ui.WebDriverWait;

/**
 * The dashboard at {@code /} end to end in headless Chromium (Debian's {@code chromium} and {@code chromium-driver},
 * which {@code ops/test.sh} installs when missing): a wrong key is refused, a tenant's key shows the board, a task
 * submitted from the page runs on a real worker and its row turns {@code completed} through the live event stream
 * (nothing else refreshes the task list), its agent's tokens, cost, branch and diff stat are shown, the fleet panels
 * are filled, and another tenant's task never appears. A screenshot is saved as {@code
 * target/e2e-logs/dashboard/dashboard.png}.
 */
class DashboardIT {
    private static final Path CHROMIUM = Path.of(System.getenv().getOrDefault("KAGE_TEST_CHROMIUM", "/usr/bin/chromium"));
    private static final Path CHROMEDRIVER = Path.of(System.getenv().getOrDefault("KAGE_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"));
    private static final String ACME = "acme-dashboard-key-1";
    private static final String GLOBEX = "globex-dashboard-key-2";
    private static final ObjectMapper JSON = new ObjectMapper();

    @Test
    void aTenantSubmitsATaskFromThePageAndWatchesItFinishLive() throws Exception {
        Assumptions.assumeTrue(Files.isExecutable(CHROMIUM) && Files.isExecutable(CHROMEDRIVER),
                "Chromium or chromedriver missing (" + CHROMIUM + ", " + CHROMEDRIVER + "): ops/test.sh installs Debian's chromium "
                        + "and chromium-driver; the dashboard test is skipped");
        Path dir = Files.createTempDirectory("kage-dashboard-it");
        Path origin = FleetIT.createRepo(dir.resolve("origin"));
        Path agents = dir.resolve("agents.yml");
        Files.writeString(agents, "agents:\n"
                + "  demo:\n"
                + "    argv: [\"" + Fleet.ROOT.resolve("ops/agents/demo-agent") + "\", \"-p\", \"{prompt}\", \"--output-format\", \"json\"]\n"
                + "    output: claude-json\n");
        Path logs = Path.of("target", "e2e-logs", "dashboard");
        try (Fleet fleet = new Fleet(logs)) {
            fleet.startCoordinator(Map.of("KAGE_AGENTS_FILE", agents.toString(), "KAGE_DEV_MODE", "false",
                    "KAGE_API_KEYS", "acme:" + ACME + ",globex:" + GLOBEX));
            fleet.startWorker("dash-w1", dir.resolve("work"), origin,
                    Map.of("KAGE_AGENTS_FILE", agents.toString(), "DEMO_AGENT_DELAY", "1.5"));
            fleet.awaitHealthy();
            fleet.awaitWorkers(1);
            HttpResponse<String> theirs = fleet.post("/api/v1/tasks", GLOBEX,
                    "{\"description\": \"globex's secret plan\", \"cli_assignments\": [{\"cli_name\": \"demo\"}]}");
            assertThat(theirs.statusCode()).as(theirs.body()).isEqualTo(202);
            String theirId = JSON.readTree(theirs.body()).get("task_id").asText();

            WebDriver browser = chromium(dir.resolve("chromium-profile"));
            try {
                WebDriverWait wait = new WebDriverWait(browser, Duration.ofSeconds(60));
                // The page renders its tables anew on each event: an element found a moment ago may be gone when it is
                // read (CI saw that for a task's status cell). Each poll finds it again.
                wait.ignoring(org.openqa.selenium.StaleElementReferenceException.class);
                browser.get("http://127.0.0.1:" + fleet.port + "/");
                assertThat(browser.getTitle()).isEqualTo("Kage Bunshin");

                browser.findElement(By.id("key")).sendKeys("not-a-key-at-all");
                browser.findElement(By.id("connect")).click();
                wait.until(ExpectedConditions.textToBePresentInElementLocated(By.id("message"), "not accepted (401)"));
                assertThat(browser.findElement(By.id("board")).isDisplayed()).isFalse();

                browser.findElement(By.id("key")).clear();
                browser.findElement(By.id("key")).sendKeys(ACME);
                browser.findElement(By.id("connect")).click();
                wait.withMessage(() -> "the board did not show; message: " + browser.findElement(By.id("message")).getText())
                        .until(ExpectedConditions.visibilityOfElementLocated(By.id("board")));
                wait.until(ExpectedConditions.textToBePresentInElementLocated(By.id("live"), "live"));
                WebElement demo = wait.until(ExpectedConditions.elementToBeClickable(By.cssSelector("input[name=agent][value=demo]")));
                wait.until(ExpectedConditions.presenceOfElementLocated(By.cssSelector("#workers tr[data-worker='dash-w1']")));

                browser.findElement(By.id("description")).sendKeys("Add a line to KAGE_DEMO.md from the dashboard");
                demo.click();
                browser.findElement(By.id("submit-task")).click();

                By row = By.cssSelector("#tasks tbody tr.selected");
                wait.until(ExpectedConditions.presenceOfElementLocated(row));
                String taskId = browser.findElement(row).getDomAttribute("data-task-id");
                wait.until(d -> "completed".equals(d.findElement(By.cssSelector("#tasks tbody tr[data-task-id='" + taskId + "'] td.status"))
                        .getText()));
                By agentRowAt = By.cssSelector("#detail-agents .agent-row[data-agent='demo']");
                wait.until(d -> d.findElement(agentRowAt).findElement(By.cssSelector(".diff")).getText().contains("1 file changed"));
                // Read through the wait, which finds the row again should it be rendered anew meanwhile.
                String tokens = wait.until(d -> d.findElement(agentRowAt).findElement(By.cssSelector(".tokens")).getText());
                String cost = wait.until(d -> d.findElement(agentRowAt).findElement(By.cssSelector(".cost")).getText());
                String agentText = wait.until(d -> d.findElement(agentRowAt).getText());
                assertThat(tokens).matches("[1-9]\\d* / [1-9]\\d*");
                assertThat(cost).startsWith("$");
                assertThat(agentText).contains("kage/" + taskId + "/demo");
                assertThat(browser.findElement(By.id("detail-status")).getText()).isEqualTo("completed");

                // The fleet panels, and nothing of the other tenant.
                wait.until(ExpectedConditions.presenceOfElementLocated(By.cssSelector("#queues tr[data-agent='demo'][data-priority='normal']")));
                assertThat(browser.findElement(By.id("budgets")).getText()).contains("Tenant acme");
                assertThat(browser.findElements(By.cssSelector("#limits tr[data-group='demo']"))).hasSize(1);
                String page = browser.getPageSource();
                // Ids are shown by their last 8 characters (a version 7 id's first ones are its minute, alike for both).
                assertThat(browser.findElement(row).getText()).contains("…" + taskId.substring(taskId.length() - 8));
                assertThat(page).doesNotContain(theirId).doesNotContain(theirId.substring(theirId.length() - 8))
                        .doesNotContain("globex's secret plan");
                List<String> rows = wait.until(d -> d.findElements(By.cssSelector("#tasks tbody tr")).stream()
                        .map(r -> r.getDomAttribute("data-task-id")).toList());
                assertThat(rows).containsExactly(taskId);

                // Events before the stream's start may be missing (a reconnect past what the capped stream still holds):
                // its stream.connected event says so, and the page reads the tasks again. Here the task changed in
                // Postgres with no event at all; the event is handed to the page's own handler as the stream would.
                fleet.count("WITH changed AS (UPDATE tasks SET status = 'cancelled' WHERE id = ?::uuid RETURNING 1) "
                        + "SELECT count(*) FROM changed", taskId);
                ((org.openqa.selenium.JavascriptExecutor) browser).executeScript("dispatch({id: '1-0', name: 'stream.connected', "
                        + "data: ['{\"type\":\"stream.connected\",\"tenant\":\"acme\",\"complete\":\"false\"}']})");
                wait.until(d -> "cancelled".equals(d.findElement(By.cssSelector("#tasks tbody tr[data-task-id='" + taskId + "'] td.status"))
                        .getText()));
                // A read answered late (a slow GET started before a later one) never puts an older view back.
                ((org.openqa.selenium.JavascriptExecutor) browser).executeScript("upsertTask(Object.assign({}, state.tasks.get("
                        + "arguments[0]), {status: 'running', updated_at: '2001-01-01T00:00:00Z'}))", taskId);
                assertThat(browser.findElement(By.cssSelector("#tasks tbody tr[data-task-id='" + taskId + "'] td.status")).getText())
                        .isEqualTo("cancelled");

                Files.createDirectories(logs);
                Path shot = ((TakesScreenshot) browser).getScreenshotAs(OutputType.FILE).toPath();
                Files.copy(shot, logs.resolve("dashboard.png"), StandardCopyOption.REPLACE_EXISTING);
                assertThat(Files.size(logs.resolve("dashboard.png"))).isGreaterThan(10_000);
            } finally {
                browser.quit();
            }
        }
    }

    /** Headless Chromium as the machine allows it: no sandbox (root), no background connections (closed network). */
    private static WebDriver chromium(Path profile) {
        ChromeDriverService service = new ChromeDriverService.Builder()
                .usingDriverExecutable(CHROMEDRIVER.toFile()).usingAnyFreePort().build();
        ChromeOptions options = new ChromeOptions();
        options.setBinary(CHROMIUM.toFile());
        options.addArguments("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1400,1100", "--user-data-dir=" + profile);
        return new ChromeDriver(service, options);
    }
}
