package dev.kage.coordinator.api;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * The query parameters a route under {@code /api} reads. {@link QueryParameterFilter} answers 400 for any other, naming
 * it, and for a parameter given twice unless it is {@link #repeatable}: a route without this annotation takes none. A
 * typo is an error, never ignored (on {@code POST /api/v1/dead-letters/replay}, {@code ?agnet=a} replayed every agent's
 * letters).
 */
@Documented
@Retention(RetentionPolicy.RUNTIME)
@Target(ElementType.METHOD)
public @interface QueryParameters {
    /** The names the route reads. */
    String[] value();

    /** Those of {@link #value} that may be given more than once. */
    String[] repeatable() default {};
}
