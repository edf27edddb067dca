package dev.kage.coordinator.auth;

import dev.kage.coordinator.api.ErrorBody;
import dev.kage.store.StoreException;
import io.micronaut.core.async.publisher.Publishers;
import io.micronaut.http.HttpRequest;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.HttpStatus;
import io.micronaut.http.MutableHttpResponse;
import io.micronaut.http.annotation.Filter;
import io.micronaut.http.filter.HttpServerFilter;
import io.micronaut.http.filter.ServerFilterChain;
import io.micronaut.scheduling.TaskExecutors;
import io.micronaut.web.router.RouteAttributes;
import io.micronaut.web.router.RouteMatch;
import jakarta.inject.Named;
import java.util.Optional;
import java.util.concurrent.ExecutorService;
import org.reactivestreams.Publisher;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import reactor.core.publisher.Flux;
import reactor.core.publisher.Mono;
import reactor.core.scheduler.Scheduler;
import reactor.core.scheduler.Schedulers;

/**
 * The API's one gate. Every {@code /api/**} request must carry a valid {@code X-API-Key} (else 401), and the key
 * must have the scope the matched route declares with {@link RequiresScope} (else 403 naming the scope). A route
 * under {@code /api} that declares none is refused (fail closed). The key's tenant is attached as {@link #TENANT},
 * the whole {@link Principal} as {@link #PRINCIPAL}.
 *
 * <p>Environment keys and recently used database keys are checked on the event loop; any other key is looked up in
 * Postgres on the blocking pool (503 while Postgres is down). The presented key is never logged.
 *
 * <p>Outside {@code /api}, and so open without a key: {@code /health} and {@code /prometheus}. Scrapers carry no API
 * key; the metrics are fleet-wide counts tagged by agent, tenant name, priority and outcome, never a key, a task id
 * or a task's text. Where tenant names must not be seen, keep the port off the public network (or put the scrape
 * behind the proxy that fronts the API).
 */
@Filter("/api/**")
public class ApiKeyFilter implements HttpServerFilter {
    public static final String HEADER = "X-API-Key";
    public static final String TENANT = "kage.tenant";
    public static final String PRINCIPAL = "kage.principal";
    /** Longer keys are refused before hashing. */
    static final int MAX_KEY_LENGTH = 256;
    private static final Logger LOG = LoggerFactory.getLogger(ApiKeyFilter.class);

    private final KeyAuthenticator keys;
    private final Scheduler blocking;

    public ApiKeyFilter(KeyAuthenticator keys, @Named(TaskExecutors.BLOCKING) ExecutorService blocking) {
        this.keys = keys;
        this.blocking = Schedulers.fromExecutorService(blocking);
    }

    /** The principal {@link ApiKeyFilter} attached to an {@code /api} request. */
    public static Principal principal(HttpRequest<?> request) {
        return request.getAttribute(PRINCIPAL, Principal.class)
                .orElseThrow(() -> new IllegalStateException("ApiKeyFilter did not run for " + request.getPath()));
    }

    @Override
    public Publisher<MutableHttpResponse<?>> doFilter(HttpRequest<?> request, ServerFilterChain chain) {
        String presented = request.getHeaders().get(HEADER);
        if (presented == null || presented.isBlank()) {
            return Publishers.just(HttpResponse.unauthorized().body(
                    ErrorBody.of("unauthorized", "missing " + HEADER + " header")));
        }
        if (presented.length() > MAX_KEY_LENGTH) {
            return invalid();
        }
        byte[] digest = ApiKeys.sha256(presented.trim());
        Optional<Principal> known = keys.fromMemory(digest);
        if (known.isPresent()) {
            return admit(request, chain, known.get());
        }
        if (!ApiKeyStore.couldBeStored(presented.trim())) {
            // No key Postgres could hold: refused without a query, so a flood of made-up keys cannot use up its pool.
            return ApiKeys.DEV_KEY.equals(presented.trim())
                    ? Publishers.just(HttpResponse.unauthorized().body(ErrorBody.of("unauthorized", "invalid API key: the "
                            + "development key " + ApiKeys.DEV_KEY + " is accepted only with KAGE_DEV_MODE=true")))
                    : invalid();
        }
        return Mono.fromCallable(() -> keys.fromStore(digest))
                .subscribeOn(blocking)
                .flatMapMany(found -> found.isPresent() ? Flux.from(admit(request, chain, found.get())) : Flux.from(invalid()))
                .onErrorResume(StoreException.class, e -> {
                    LOG.error("Postgres unavailable to check an API key for {} {}: {}", request.getMethod(), request.getPath(),
                            e.getMessage());
                    return Mono.just(HttpResponse.status(HttpStatus.SERVICE_UNAVAILABLE).header("Retry-After", "5")
                            .body(ErrorBody.of("database_unavailable", "the database is unavailable to check the API key; retry shortly")));
                });
    }

    private static Publisher<MutableHttpResponse<?>> admit(HttpRequest<?> request, ServerFilterChain chain, Principal principal) {
        Optional<RouteMatch<?>> route = RouteAttributes.getRouteMatch(request);
        if (route.isPresent()) {
            Optional<Scope> required = route.get().getAnnotationMetadata().enumValue(RequiresScope.class, Scope.class);
            if (required.isEmpty()) {
                LOG.error("{} {} declares no @RequiresScope: refused", request.getMethod(), request.getPath());
                return Publishers.just(HttpResponse.status(HttpStatus.FORBIDDEN).body(ErrorBody.of("forbidden",
                        "this route declares no scope and is closed; report it as a bug")));
            }
            if (!principal.has(required.get())) {
                return Publishers.just(HttpResponse.status(HttpStatus.FORBIDDEN).body(ErrorBody.of("forbidden",
                        "this needs an API key with scope '" + required.get().wireName() + "'; this key has: "
                                + Scope.describe(principal.scopes()) + adminHint(required.get()))));
            }
        }
        // No route: an unknown path or method, answered 404/405 after the key was checked.
        request.setAttribute(PRINCIPAL, principal);
        request.setAttribute(TENANT, principal.tenant());
        return chain.proceed(request);
    }

    private static String adminHint(Scope required) {
        return required == Scope.ADMIN
                ? " (an admin key: created with scope admin, or a KAGE_API_KEYS key of a tenant in KAGE_ADMIN_TENANTS)"
                : "";
    }

    private static Publisher<MutableHttpResponse<?>> invalid() {
        return Publishers.just(HttpResponse.unauthorized().body(ErrorBody.of("unauthorized", "invalid API key")));
    }
}
