package dev.kage.config;

/** What happens when a job would pass its token budget ({@code BUDGET_MODE}). */
public enum BudgetMode {
    /** The seed's behaviour: the job runs, the violation is logged and recorded as an error row. */
    LOG,
    /** A job that cannot reserve its estimate does not start; its task records why. */
    ENFORCE
}
