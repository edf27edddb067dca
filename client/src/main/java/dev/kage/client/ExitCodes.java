package dev.kage.client;

/** The exit statuses of {@code kage}, documented in its help and in the README. */
public final class ExitCodes {
    /** The command did what it was asked. */
    public static final int OK = 0;
    /** {@code --wait}: the task ended {@code partial}, {@code failed} or {@code cancelled}. */
    public static final int TASK_NOT_COMPLETED = 1;
    /** Bad command line or client configuration (picocli's usage status). */
    public static final int USAGE = 2;
    /** The API refused the request (4xx); its message is printed. */
    public static final int API_REFUSED = 3;
    /** The coordinator failed (5xx) or could not be reached. */
    public static final int UNAVAILABLE = 4;

    private ExitCodes() {
    }
}
