package dev.kage.coordinator.auth;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * The scope an API key needs for a route, on a controller method or on the controller (its methods inherit it; a
 * method's own annotation wins). {@link ApiKeyFilter} enforces it for every route under {@code /api}; a route there
 * without one is refused, so a forgotten annotation fails closed (and {@code RouteScopesTest} finds it).
 */
@Documented
@Retention(RetentionPolicy.RUNTIME)
@Target({ElementType.METHOD, ElementType.TYPE})
public @interface RequiresScope {
    Scope value();
}
