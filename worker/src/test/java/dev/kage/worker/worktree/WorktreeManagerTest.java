package dev.kage.worker.worktree;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.kage.worker.worktree.WorktreeManager.Commit;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class WorktreeManagerTest {
    @TempDir
    Path dir;
    private Path origin;
    private WorktreeManager manager;

    @BeforeEach
    void createOrigin() throws Exception {
        origin = GitTestRepos.create(dir.resolve("origin"));
        manager = new WorktreeManager(dir.resolve("work"));
    }

    @Test
    void anAgentsEditIsCommittedOnItsBranchAndPushedToTheOrigin() throws Exception {
        Worktree worktree = manager.create(origin.toString(), "main", "kage/t1/demo", "t1-demo");
        assertThat(worktree.path().resolve("README.md")).exists();
        Files.writeString(worktree.path().resolve("NEW.md"), "hello\n");
        Commit commit = manager.commit(worktree, "kage: demo for task t1");
        manager.push(worktree);
        manager.remove(worktree);

        assertThat(commit.diffStat()).isEqualTo("1 file changed, 1 insertion(+)");
        assertThat(commit.patch()).contains("+++ b/NEW.md").contains("+hello");
        assertThat(worktree.path()).doesNotExist();
        assertThat(Git.run(origin, "show", "kage/t1/demo:NEW.md")).isEqualTo("hello");
        assertThat(Git.run(origin, "rev-parse", "kage/t1/demo")).isEqualTo(commit.sha());
    }

    @Test
    void noJobsGitPacksTheCloneOutsideItsLockThePruneDoesUnderIt() throws Exception {
        Worktree worktree = manager.create(origin.toString(), "main", "kage/t9/demo", "t9-demo");
        // The clone asks for gc after a single loose object, in the foreground (so a commit that ran it would have
        // packed before it returned). 2,000 new files: git's estimate (objects/17 times 256) passes 1 for certain.
        GitTestRepos.git(worktree.cache(), "config", "gc.auto", "1");
        GitTestRepos.git(worktree.cache(), "config", "gc.autoDetach", "false");
        for (int i = 0; i < 2_000; i++) {
            Files.writeString(worktree.path().resolve("f" + i), "content " + i + "\n");
        }
        manager.commit(worktree, "kage: many files");
        assertThat(looseObjects(worktree.cache())).as("a job's commit ran no gc").isGreaterThan(2_000);
        manager.remove(worktree);

        manager.pruneOlderThan(java.time.Duration.ofDays(7));
        assertThat(looseObjects(worktree.cache())).as("packed by the prune, under the clone's lock").isZero();
    }

    private static long looseObjects(Path repo) {
        // "N objects, M kilobytes"
        return Long.parseLong(GitTestRepos.git(repo, "count-objects").trim().split(" ")[0]);
    }

    @Test
    void nothingChangedMeansNoCommitAndAnEmptyDiffStat() throws Exception {
        Worktree worktree = manager.create(origin.toString(), "main", "kage/t2/demo", "t2-demo");
        Commit commit = manager.commit(worktree, "nothing");
        assertThat(commit.sha()).isEqualTo(worktree.baseSha());
        assertThat(commit.diffStat()).isEmpty();
        assertThat(commit.patch()).isNull();
    }

    @Test
    void aMissingBaseBranchOrRepositoryIsAClearNonRetryableError() {
        assertThatThrownBy(() -> manager.create(origin.toString(), "nope", "kage/t3/demo", "t3-demo"))
                .isInstanceOf(GitException.class)
                .hasMessageContaining("base branch 'nope' does not exist")
                .satisfies(e -> assertThat(((GitException) e).retryable()).isFalse());
        assertThatThrownBy(() -> manager.create(dir.resolve("missing").toString(), "main", "kage/t3/demo", "t3-demo"))
                .isInstanceOf(GitException.class);
        assertThatThrownBy(() -> manager.create("--upload-pack=touch /tmp/x", "main", "kage/t3/demo", "t3-demo"))
                .hasMessageContaining("is not a path or URL");
        assertThatThrownBy(() -> manager.create("ext::sh -c touch% /tmp/kage-ext-pwned", "main", "kage/t3/demo", "t3-demo"))
                .isInstanceOf(GitException.class);
        assertThat(Path.of("/tmp/kage-ext-pwned")).doesNotExist();
    }

    @Test
    void aLeftoverWorktreeOfACrashedRunIsReplaced() throws Exception {
        Worktree first = manager.create(origin.toString(), "main", "kage/t4/demo", "t4-demo");
        Files.writeString(first.path().resolve("junk"), "half-done");
        // The worker died with the run: the next process's manager finds the worktree on disk.
        WorktreeManager restarted = new WorktreeManager(dir.resolve("work"));
        Worktree second = restarted.create(origin.toString(), "main", "kage/t4/demo", "t4-demo");
        assertThat(second.path().resolve("junk")).doesNotExist();
        assertThat(restarted.activeWorktrees()).isEqualTo(1);
    }

    @Test
    void manyJobsOnOneRepositoryAtOnceEachGetTheirOwnBranch() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(6);
        List<Future<Commit>> commits = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            int n = i;
            commits.add(pool.submit(() -> {
                Worktree worktree = manager.create(origin.toString(), "main", "kage/t5/agent" + n, "t5-agent" + n);
                Files.writeString(worktree.path().resolve("file" + n), "n=" + n + "\n");
                Commit commit = manager.commit(worktree, "agent " + n);
                manager.push(worktree);
                manager.remove(worktree);
                return commit;
            }));
        }
        for (Future<Commit> commit : commits) {
            assertThat(commit.get().diffStat()).isEqualTo("1 file changed, 1 insertion(+)");
        }
        pool.shutdown();
        assertThat(Git.run(origin, "branch", "--list", "kage/t5/*").lines().count()).isEqualTo(6);
    }

    @Test
    void jobsArrivingTogetherShareOneFetchAndALaterJobSeesWhatWasPushedBeforeIt() throws Exception {
        int jobs = 12;
        ExecutorService pool = Executors.newFixedThreadPool(jobs);
        java.util.concurrent.CountDownLatch start = new java.util.concurrent.CountDownLatch(1);
        List<Future<Worktree>> created = new ArrayList<>();
        for (int i = 0; i < jobs; i++) {
            int n = i;
            created.add(pool.submit(() -> {
                start.await();
                return manager.create(origin.toString(), "main", "kage/t6/agent" + n, "t6-agent" + n);
            }));
        }
        start.countDown();
        String firstHead = Git.run(origin, "rev-parse", "main");
        for (Future<Worktree> worktree : created) {
            assertThat(worktree.get().baseSha()).isEqualTo(firstHead);
            manager.remove(worktree.get());
        }
        pool.shutdown();
        assertThat(manager.fetchesRun()).as("12 jobs arriving together, fetched for by few fetches").isLessThanOrEqualTo(3);

        // A commit pushed to the origin before a job arrives is what that job starts from.
        Files.writeString(origin.resolve("NEW.md"), "new\n");
        Git.run(origin, "add", "NEW.md");
        Git.run(origin, "-c", "user.name=Test", "-c", "user.email=test@localhost", "commit", "--quiet", "-m", "newer");
        String newHead = Git.run(origin, "rev-parse", "main");
        Worktree later = manager.create(origin.toString(), "main", "kage/t7/agent", "t7-agent");
        assertThat(later.baseSha()).isEqualTo(newHead);
        assertThat(later.path().resolve("NEW.md")).exists();
    }

    @Test
    void beyondMaxActiveWorktreesAJobWaitsForOneToBeRemoved() throws Exception {
        WorktreeManager limited = new WorktreeManager(dir.resolve("limited"), 1);
        Worktree first = limited.create(origin.toString(), "main", "kage/m1/demo", "m1-demo");
        java.util.concurrent.CompletableFuture<Worktree> second = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            try {
                return limited.create(origin.toString(), "main", "kage/m2/demo", "m2-demo");
            } catch (InterruptedException e) {
                throw new IllegalStateException(e);
            }
        });
        org.awaitility.Awaitility.await().during(java.time.Duration.ofMillis(700)).atMost(java.time.Duration.ofSeconds(2))
                .until(() -> !second.isDone());
        assertThat(limited.inUse()).isEqualTo(1);
        limited.remove(first);
        Worktree created = second.get(30, java.util.concurrent.TimeUnit.SECONDS);
        assertThat(created.path()).exists();
        assertThat(limited.inUse()).isEqualTo(1);
        limited.remove(created);
        assertThat(limited.inUse()).isZero();

        // A job stopped while it waits does not take a worktree.
        Worktree held = limited.create(origin.toString(), "main", "kage/m3/demo", "m3-demo");
        Thread waiter = Thread.ofVirtual().start(() -> {
            try {
                limited.create(origin.toString(), "main", "kage/m4/demo", "m4-demo");
            } catch (InterruptedException expected) {
                // stopped, as a cancel or a shutdown stops a job
            }
        });
        waiter.interrupt();
        waiter.join(10_000);
        limited.remove(held);
        assertThat(limited.inUse()).isZero();
        assertThat(dir.resolve("limited/worktrees/m4-demo")).doesNotExist();
    }

    @Test
    void worktreesAndBranchesOlderThanTheCleanupAgeThatNoJobUsesArePruned() throws Exception {
        Worktree kept = manager.create(origin.toString(), "main", "kage/p1/demo", "p1-demo");
        Worktree done = manager.create(origin.toString(), "main", "kage/p2/demo", "p2-demo");
        manager.remove(done);
        Path stray = Files.createDirectories(dir.resolve("work/worktrees/p3-stray"));

        assertThat(manager.pruneOlderThan(java.time.Duration.ofDays(7))).as("everything is younger than a week").isZero();
        // Anything older than now: the finished job's branch and the stray folder go; the running job's stay.
        int pruned = manager.pruneOlderThan(java.time.Duration.ofSeconds(-60));
        assertThat(pruned).isEqualTo(2);
        assertThat(stray).doesNotExist();
        assertThat(kept.path()).exists();
        assertThat(Git.run(kept.cache(), "for-each-ref", "--format=%(refname)", "refs/heads/kage/")).isEqualTo("refs/heads/kage/p1/demo");
        manager.remove(kept);
    }

    @Test
    void aHugePatchIsCappedAndSaysHowMuchWasLeftOut() throws Exception {
        Worktree worktree = manager.create(origin.toString(), "main", "kage/h1/demo", "h1-demo");
        Files.writeString(worktree.path().resolve("BIG.txt"), "generated line\n".repeat(50_000));
        Commit commit = manager.commit(worktree, "a generated file");
        assertThat(commit.diffStat()).isEqualTo("1 file changed, 50000 insertions(+)");
        assertThat(commit.patch().length()).isLessThan(WorktreeManager.PATCH_BYTES + 200);
        assertThat(commit.patch()).startsWith("diff --git a/BIG.txt b/BIG.txt").containsPattern("\\[\\.\\.\\. \\d+ more bytes of the patch omitted");
        manager.remove(worktree);
    }

    @Test
    void theSameJobGetsItsWorktreeAgainAfterARemoval() throws Exception {
        // A retry, a rate-limit deferral or a reclaim runs the same task and agent again on the same worker.
        for (int run = 0; run < 3; run++) {
            Worktree worktree = manager.create(origin.toString(), "main", "kage/r1/demo", "r1-demo");
            Files.writeString(worktree.path().resolve("RUN.md"), "run " + run + "\n");
            assertThat(manager.commit(worktree, "run " + run).diffStat()).isEqualTo("1 file changed, 1 insertion(+)");
            manager.remove(worktree);
        }
    }

    @Test
    void aSecondUseOfTheSameJobsWorktreeWaitsForTheFirstsRemovalAndNeitherClobbersTheOther() throws Exception {
        // The same task and agent again on this worker while its earlier run is still being stopped and cleaned up (a job
        // reclaimed from this worker and handed back to it, a retry claimed by another slot): one path, one branch.
        WorktreeManager limited = new WorktreeManager(dir.resolve("leases"), 2);
        Worktree first = limited.create(origin.toString(), "main", "kage/r2/demo", "r2-demo");
        Files.writeString(first.path().resolve("FIRST.md"), "the first run's work\n");
        java.util.concurrent.CompletableFuture<Worktree> second = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            try {
                return limited.create(origin.toString(), "main", "kage/r2/demo", "r2-demo");
            } catch (InterruptedException e) {
                throw new IllegalStateException(e);
            }
        });
        org.awaitility.Awaitility.await().during(java.time.Duration.ofMillis(700)).atMost(java.time.Duration.ofSeconds(5))
                .until(() -> !second.isDone());
        assertThat(first.path().resolve("FIRST.md")).as("the first run's worktree is left alone while it is in use")
                .hasContent("the first run's work");
        assertThat(limited.commit(first, "first").diffStat()).isEqualTo("1 file changed, 1 insertion(+)");
        assertThat(limited.inUse()).isEqualTo(1);

        limited.remove(first);
        Worktree next = second.get(30, java.util.concurrent.TimeUnit.SECONDS);
        assertThat(next.path()).exists();
        assertThat(limited.inUse()).isEqualTo(1);
        // A late second removal of the first run's worktree (the same path) leaves the second run's alone.
        limited.remove(first);
        assertThat(next.path()).exists();
        assertThat(limited.inUse()).isEqualTo(1);
        limited.remove(next);
        assertThat(limited.inUse()).isZero();

        // Both slots of MAX_ACTIVE_WORKTREES=2 are free again: two other jobs get theirs at once.
        java.util.concurrent.CompletableFuture<Worktree> a = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            try {
                return limited.create(origin.toString(), "main", "kage/r3/demo", "r3-demo");
            } catch (InterruptedException e) {
                throw new IllegalStateException(e);
            }
        });
        Worktree b = limited.create(origin.toString(), "main", "kage/r4/demo", "r4-demo");
        assertThat(a.get(30, java.util.concurrent.TimeUnit.SECONDS).path()).exists();
        assertThat(limited.inUse()).isEqualTo(2);
        limited.remove(b);
        limited.remove(a.get());
        assertThat(limited.inUse()).isZero();
    }

    @Test
    void aJobTakesAReadyWorktreeWhereOnlyItsBranchMovesAndThePoolIsToppedUp() throws Exception {
        WorktreeManager pooled = new WorktreeManager(dir.resolve("pooled"), 50, 2);
        Worktree first = pooled.create(origin.toString(), "main", "kage/p1/demo", "p1-demo");
        assertThat(first.path().getFileName().toString()).isEqualTo("p1-demo"); // nothing was ready yet
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).until(() -> pooled.readyCount() == 2);

        Worktree second = pooled.create(origin.toString(), "main", "kage/p2/demo", "p2-demo");
        assertThat(second.path().getFileName().toString()).startsWith("ready-");
        assertThat(Git.run(second.path(), "rev-parse", "--abbrev-ref", "HEAD")).isEqualTo("kage/p2/demo");
        assertThat(Git.run(second.path(), "rev-parse", "HEAD")).isEqualTo(second.baseSha());
        assertThat(second.path().resolve("README.md")).exists();
        Files.writeString(second.path().resolve("NEW.md"), "from a ready worktree\n");
        Commit commit = pooled.commit(second, "kage: demo for task p2");
        pooled.push(second);
        assertThat(commit.diffStat()).isEqualTo("1 file changed, 1 insertion(+)");
        assertThat(Git.run(origin, "show", "kage/p2/demo:NEW.md")).isEqualTo("from a ready worktree");
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).until(() -> pooled.readyCount() == 2);
        assertThat(pooled.inUse()).isEqualTo(2);

        pooled.remove(first);
        pooled.remove(second);
        pooled.close();
        assertThat(pooled.readyCount()).isZero();
        try (var left = Files.list(dir.resolve("pooled/worktrees"))) {
            assertThat(left.toList()).as("ready worktrees removed on close").isEmpty();
        }
    }

    @Test
    void aReadyWorktreePreparedBeforeAPushStartsFromThePush() throws Exception {
        WorktreeManager pooled = new WorktreeManager(dir.resolve("pooled"), 50, 1);
        pooled.remove(pooled.create(origin.toString(), "main", "kage/p3/demo", "p3-demo"));
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).until(() -> pooled.readyCount() == 1);
        Files.writeString(origin.resolve("PUSHED.md"), "pushed\n");
        Git.run(origin, "add", "PUSHED.md");
        Git.run(origin, "-c", "user.name=Test", "-c", "user.email=test@localhost", "commit", "--quiet", "-m", "pushed");

        Worktree worktree = pooled.create(origin.toString(), "main", "kage/p4/demo", "p4-demo");
        assertThat(worktree.path().getFileName().toString()).startsWith("ready-");
        assertThat(worktree.baseSha()).isEqualTo(Git.run(origin, "rev-parse", "main"));
        assertThat(worktree.path().resolve("PUSHED.md")).hasContent("pushed");
        assertThat(pooled.commit(worktree, "nothing").diffStat()).isEmpty();
        pooled.close();
    }

    @Test
    void aRetryThatFindsNoReadyWorktreeGetsAFreshOneOnTheBranchItsFirstRunLeftInARemovedReadyOne() throws Exception {
        // One slot, one ready worktree: what a retry meets when the pool is empty (a burst took it, or another
        // repository's job evicted it). Its first run took a ready worktree, removed without git: until the next
        // prune, git still counts that folder as having the job's branch checked out.
        Path otherOrigin = GitTestRepos.create(dir.resolve("other-origin"));
        WorktreeManager pooled = new WorktreeManager(dir.resolve("pooled"), 1, 1);
        pooled.remove(pooled.create(origin.toString(), "main", "kage/warm/demo", "warm-demo"));
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).until(() -> pooled.readyCount() == 1);
        Worktree first = pooled.create(origin.toString(), "main", "kage/t9/demo", "t9-demo");
        assertThat(first.ready()).isTrue();
        pooled.remove(first);
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).until(() -> pooled.readyCount() == 1);
        // Another repository's job evicts the first one's ready worktree; its own refill leaves the pool to that repository.
        pooled.remove(pooled.create(otherOrigin.toString(), "main", "kage/o1/demo", "o1-demo"));
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).until(() -> pooled.readyCount() == 1);

        Worktree retry = pooled.create(origin.toString(), "main", "kage/t9/demo", "t9-demo");
        assertThat(retry.ready()).as("no ready worktree of this repository was left").isFalse();
        Files.writeString(retry.path().resolve("RETRY.md"), "second run\n");
        assertThat(pooled.commit(retry, "retry").diffStat()).isEqualTo("1 file changed, 1 insertion(+)");
        pooled.push(retry);
        assertThat(Git.run(origin, "show", "kage/t9/demo:RETRY.md")).isEqualTo("second run");
        pooled.remove(retry);
        pooled.close();
    }

    @Test
    void readyWorktreesGiveWayToAJobWhenMaxActiveWorktreesIsReached() throws Exception {
        Path otherOrigin = GitTestRepos.create(dir.resolve("other-origin"));
        WorktreeManager pooled = new WorktreeManager(dir.resolve("pooled"), 2, 2);
        Worktree first = pooled.create(origin.toString(), "main", "kage/p5/demo", "p5-demo");
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).until(() -> pooled.readyCount() == 1);
        // The one free slot is a ready worktree of the first repository; a job of another one must not wait for it.
        Worktree other = java.util.concurrent.CompletableFuture.supplyAsync(() -> {
            try {
                return pooled.create(otherOrigin.toString(), "main", "kage/p6/demo", "p6-demo");
            } catch (InterruptedException e) {
                throw new IllegalStateException(e);
            }
        }).get(30, java.util.concurrent.TimeUnit.SECONDS);
        assertThat(other.path().resolve("README.md")).exists();
        assertThat(pooled.inUse()).isEqualTo(2);
        assertThat(pooled.readyCount()).isZero();
        try (var present = Files.list(dir.resolve("pooled/worktrees"))) {
            assertThat(present.count()).as("never more than MAX_ACTIVE_WORKTREES").isEqualTo(2);
        }
        pooled.remove(first);
        pooled.remove(other);
        pooled.close();
    }

    @Test
    void theSameJobRunAgainTakesReadyWorktreesOnItsOwnBranch() throws Exception {
        WorktreeManager pooled = new WorktreeManager(dir.resolve("pooled"), 50, 2);
        for (int run = 0; run < 4; run++) {
            if (run > 0) {
                org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).until(() -> pooled.readyCount() == 2);
            }
            Worktree worktree = pooled.create(origin.toString(), "main", "kage/r2/demo", "r2-demo");
            Files.writeString(worktree.path().resolve("RUN.md"), "run " + run + "\n");
            assertThat(pooled.commit(worktree, "run " + run).diffStat()).isEqualTo("1 file changed, 1 insertion(+)");
            pooled.push(worktree);
            pooled.remove(worktree);
            assertThat(Git.run(origin, "show", "kage/r2/demo:RUN.md")).isEqualTo("run " + run);
        }
        pooled.close();
    }

    @Test
    void anAgentThatSwitchedBranchOrDetachedHeadHasItsWorkCommittedAndPushedOnTheJobsBranch() throws Exception {
        Worktree worktree = manager.create(origin.toString(), "main", "kage/b1/demo", "b1-demo");
        Git.run(worktree.path(), "checkout", "--quiet", "-b", "fix-123");
        Files.writeString(worktree.path().resolve("FIX.md"), "on a branch of the agent's own\n");
        Git.run(worktree.path(), "add", "FIX.md");
        Git.run(worktree.path(), "-c", "user.name=Agent", "-c", "user.email=agent@localhost", "commit", "--quiet", "-m", "fix");
        Files.writeString(worktree.path().resolve("MORE.md"), "left for the worker to commit\n");
        Commit commit = manager.commit(worktree, "kage: the rest");
        manager.push(worktree);
        assertThat(commit.diffStat()).isEqualTo("2 files changed, 2 insertions(+)");
        assertThat(Git.run(origin, "rev-parse", "kage/b1/demo")).isEqualTo(commit.sha());
        assertThat(Git.run(origin, "show", "kage/b1/demo:FIX.md")).isEqualTo("on a branch of the agent's own");
        manager.remove(worktree);

        Worktree detached = manager.create(origin.toString(), "main", "kage/b2/demo", "b2-demo");
        Git.run(detached.path(), "checkout", "--quiet", "--detach");
        Files.writeString(detached.path().resolve("DETACHED.md"), "on a detached HEAD\n");
        Commit second = manager.commit(detached, "kage: detached");
        manager.push(detached);
        assertThat(Git.run(origin, "rev-parse", "kage/b2/demo")).isEqualTo(second.sha()).isNotEqualTo(detached.baseSha());
        manager.remove(detached);

        // HEAD left on history that does not come from the base (here an unrelated branch it made): not the job's work.
        Worktree elsewhere = manager.create(origin.toString(), "main", "kage/b3/demo", "b3-demo");
        Git.run(elsewhere.path(), "checkout", "--quiet", "--orphan", "unrelated");
        Git.run(elsewhere.path(), "-c", "user.name=Agent", "-c", "user.email=agent@localhost", "commit", "--quiet", "-m", "x");
        Files.writeString(elsewhere.path().resolve("LEFT.md"), "left uncommitted on the unrelated branch\n");
        String unrelated = Git.run(elsewhere.path(), "rev-parse", "refs/heads/unrelated");
        Commit third = manager.commit(elsewhere, "kage: nothing of the job");
        assertThat(third.sha()).isEqualTo(elsewhere.baseSha());
        assertThat(third.diffStat()).isEmpty();
        assertThat(third.stray()).as("said, not silently dropped").contains("does not come from the job's base");
        assertThat(Git.run(elsewhere.path(), "rev-parse", "refs/heads/kage/b3/demo")).isEqualTo(elsewhere.baseSha());
        assertThat(Git.run(elsewhere.path(), "rev-parse", "refs/heads/unrelated")).as("the worker's commit moved no branch of the agent's")
                .isEqualTo(unrelated);
        manager.remove(elsewhere);
    }

    @Test
    void anAgentThatCommittedItselfIsSeenWithNothingLeftToCommit() throws Exception {
        Worktree worktree = manager.create(origin.toString(), "main", "kage/c1/demo", "c1-demo");
        Files.writeString(worktree.path().resolve("SELF.md"), "committed by the agent\n");
        Git.run(worktree.path(), "add", "SELF.md");
        Git.run(worktree.path(), "-c", "user.name=Agent", "-c", "user.email=agent@localhost", "commit", "--quiet", "-m", "mine");
        Commit commit = manager.commit(worktree, "kage: nothing more");
        assertThat(commit.sha()).isEqualTo(Git.run(worktree.path(), "rev-parse", "HEAD")).isNotEqualTo(worktree.baseSha());
        assertThat(commit.diffStat()).isEqualTo("1 file changed, 1 insertion(+)");
        assertThat(commit.patch()).startsWith("diff --git a/SELF.md b/SELF.md").contains("+committed by the agent");
        manager.remove(worktree);
    }

    @Test
    void aJobQueuedBeforeTheLastFetchAsksTheOriginNothingAndOneQueuedAfterAPushSeesIt() throws Exception {
        long longAgo = System.currentTimeMillis() - 60_000;
        Worktree first = manager.create(origin.toString(), "main", "kage/q1/demo", "q1-demo", longAgo);
        long fetches = manager.fetchesRun();
        long checks = manager.freshnessChecks();

        // Queued before the clone's last fetch started: that fetch holds every push it must see.
        Worktree backlog = manager.create(origin.toString(), "main", "kage/q2/demo", "q2-demo", longAgo);
        assertThat(manager.freshnessChecks()).isEqualTo(checks);
        assertThat(manager.fetchesRun()).isEqualTo(fetches);
        assertThat(backlog.baseSha()).isEqualTo(first.baseSha());

        // Pushed, then queued: the job asks the origin and fetches the push.
        Files.writeString(origin.resolve("PUSHED.md"), "pushed\n");
        Git.run(origin, "add", "PUSHED.md");
        Git.run(origin, "-c", "user.name=Test", "-c", "user.email=test@localhost", "commit", "--quiet", "-m", "pushed");
        Worktree after = manager.create(origin.toString(), "main", "kage/q3/demo", "q3-demo", System.currentTimeMillis());
        assertThat(manager.freshnessChecks()).isEqualTo(checks + 1);
        assertThat(manager.fetchesRun()).isEqualTo(fetches + 1);
        assertThat(after.baseSha()).isEqualTo(Git.run(origin, "rev-parse", "main")).isNotEqualTo(first.baseSha());
        assertThat(after.path().resolve("PUSHED.md")).exists();

        // A job queued a moment ago (inside the margin) is not served by a fetch from before it arrived.
        Worktree recent = manager.create(origin.toString(), "main", "kage/q4/demo", "q4-demo", System.currentTimeMillis() - 10);
        assertThat(manager.freshnessChecks()).isEqualTo(checks + 2);
        assertThat(recent.baseSha()).isEqualTo(after.baseSha());
        for (Worktree worktree : List.of(first, backlog, after, recent)) {
            manager.remove(worktree);
        }
    }

    @Test
    void aRepositoryPreparedAtStartHasItsCloneAndReadyWorktreesBeforeTheFirstJob() throws Exception {
        WorktreeManager pooled = new WorktreeManager(dir.resolve("pooled"), 50, 3);
        pooled.prepare(origin.toString(), "main");
        org.awaitility.Awaitility.await().atMost(java.time.Duration.ofSeconds(30)).until(() -> pooled.readyCount() == 3);
        long fetches = pooled.fetchesRun();
        Worktree first = pooled.create(origin.toString(), "main", "kage/s1/demo", "s1-demo", System.currentTimeMillis() - 60_000);
        assertThat(first.ready()).as("the first job takes a ready worktree").isTrue();
        assertThat(pooled.fetchesRun()).isEqualTo(fetches);
        assertThat(first.baseSha()).isEqualTo(Git.run(origin, "rev-parse", "main"));
        pooled.remove(first);
        pooled.close();

        WorktreeManager broken = new WorktreeManager(dir.resolve("broken"), 50, 3);
        Thread preparing = broken.prepare(dir.resolve("no-such-repo").toString(), "main"); // logged, nothing prepared
        assertThatThrownBy(() -> broken.create(dir.resolve("no-such-repo").toString(), "main", "kage/s2/demo", "s2-demo"))
                .isInstanceOf(GitException.class);
        // Its failed clone may come after the job's: it must be over before the test's directory is deleted.
        assertThat(preparing.join(java.time.Duration.ofSeconds(30))).isTrue();
        assertThat(broken.readyCount()).isZero();
        broken.close();
    }
}
