package dev.kage.coordinator.api;

import static org.assertj.core.api.Assertions.assertThat;

import dev.kage.coordinator.auth.ApiKeyStore;
import dev.kage.coordinator.auth.RequiresScope;
import dev.kage.coordinator.auth.Scope;
import dev.kage.store.Database;
import io.micronaut.web.router.Router;
import io.micronaut.web.router.UriRouteInfo;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.EnumSet;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Walks every route the coordinator serves: each one under {@code /api} declares a scope and refuses a key without
 * it; anything else is deliberately public (the health checks, the OpenAPI document and its UI). A new endpoint
 * cannot be forgotten.
 */
class RouteScopesTest {
    /**
     * Routes outside {@code /api} that need no key, by path template prefix: the health checks ({@code /health},
     * {@code /health/liveness}, {@code /health/readiness}). The OpenAPI document ({@code /swagger/**}) and Swagger UI
     * ({@code /swagger-ui/**}) are public too, as static resources from the jar rather than routes; see
     * {@link #theHealthChecksAndTheApiDocumentNeedNoKeyAndNoOtherManagementEndpointIsServed}.
     */
    private static final Set<String> PUBLIC = Set.of("/health", "/prometheus");
    private static TestCoordinator coordinator;
    private static final Map<Scope, String> KEYS_WITHOUT = new EnumMap<>(Scope.class);
    private static final Map<Scope, String> KEYS_WITH_ONLY = new EnumMap<>(Scope.class);

    @BeforeAll
    static void start() {
        coordinator = new TestCoordinator("ops:ops-admin-key-1", Map.of("KAGE_ADMIN_TENANTS", "ops"));
        ApiKeyStore store = new ApiKeyStore(coordinator.context().getBean(Database.class));
        for (Scope scope : Scope.values()) {
            Set<Scope> others = EnumSet.complementOf(EnumSet.of(scope));
            KEYS_WITHOUT.put(scope, store.create("walker", "without " + scope.wireName(), others).key());
            KEYS_WITH_ONLY.put(scope, store.create("walker", "only " + scope.wireName(), Set.of(scope)).key());
        }
    }

    @AfterAll
    static void stop() {
        coordinator.close();
    }

    private static List<UriRouteInfo<?, ?>> routes() {
        return coordinator.context().getBean(Router.class).uriRoutes().toList();
    }

    private static String path(UriRouteInfo<?, ?> route) {
        return route.getUriMatchTemplate().toString();
    }

    @Test
    void everyApiRouteDeclaresAScopeAndEveryOtherRouteIsDeliberatelyPublic() {
        List<String> undeclared = new ArrayList<>();
        int api = 0;
        for (UriRouteInfo<?, ?> route : routes()) {
            String path = path(route);
            Optional<Scope> scope = route.getAnnotationMetadata().enumValue(RequiresScope.class, Scope.class);
            if (path.startsWith("/api/")) {
                api++;
                if (scope.isEmpty()) {
                    undeclared.add(route.getHttpMethodName() + " " + path);
                }
            } else if (PUBLIC.stream().noneMatch(path::startsWith)) {
                undeclared.add(route.getHttpMethodName() + " " + path + " (outside /api and not in PUBLIC)");
            }
        }
        assertThat(undeclared).isEmpty();
        assertThat(api).as("the walk found the API").isGreaterThanOrEqualTo(25);
    }

    @Test
    void everyApiRouteRefusesAKeyWithoutItsScopeAndAdmitsOneWithOnlyThat() throws Exception {
        List<String> wrong = new ArrayList<>();
        for (UriRouteInfo<?, ?> route : routes()) {
            String template = path(route);
            if (!template.startsWith("/api/")) {
                continue;
            }
            Scope scope = route.getAnnotationMetadata().enumValue(RequiresScope.class, Scope.class).orElseThrow();
            String path = template.replaceAll("\\{\\?[^}]*}", "").replaceAll("\\{[^}]*}", "x");
            String method = route.getHttpMethodName();
            String body = method.equals("POST") || method.equals("PUT") ? "{}" : null;

            HttpResponse<String> refused = coordinator.send(method, path, KEYS_WITHOUT.get(scope), body);
            boolean head = method.equals("HEAD"); // no body to name the scope
            if (refused.statusCode() != 403 || !head && !refused.body().contains("scope '" + scope.wireName() + "'")) {
                wrong.add(method + " " + path + " without " + scope.wireName() + ": " + refused.statusCode() + " " + refused.body());
            }
            HttpResponse<String> admitted = route.getProduces().contains(io.micronaut.http.MediaType.TEXT_EVENT_STREAM_TYPE)
                    ? streamOpened(path, KEYS_WITH_ONLY.get(scope))
                    : coordinator.send(method, path, KEYS_WITH_ONLY.get(scope), body);
            if (admitted.statusCode() == 401 || admitted.body().contains("this needs an API key with scope")
                    || head && admitted.statusCode() == 403 && !template.startsWith("/api/v1/budgets/")) {
                wrong.add(method + " " + path + " with only " + scope.wireName() + ": " + admitted.statusCode() + " " + admitted.body());
            }
        }
        assertThat(wrong).isEmpty();
    }

    @Test
    void theHealthChecksAndTheApiDocumentNeedNoKeyAndNoOtherManagementEndpointIsServed() throws Exception {
        for (String path : List.of("/health", "/health/liveness", "/health/readiness", OpenApiDocumentTest.DOCUMENT,
                OpenApiDocumentTest.UI)) {
            assertThat(anonymous(path).statusCode()).as(path).isEqualTo(200);
        }
        assertThat(anonymous("/health/readiness").body()).contains("\"redis\":\"UP\"").contains("\"postgres\":\"UP\"");
        for (String path : List.of("/beans", "/routes", "/info", "/threaddump")) {
            assertThat(anonymous(path).statusCode()).as(path).isEqualTo(404);
        }
    }

    /**
     * A GET of an event stream that is let in: its status, and its body only when it is not a stream (an error's
     * JSON) — a stream that has opened may never end.
     */
    private static HttpResponse<String> streamOpened(String path, String apiKey) throws Exception {
        HttpResponse<java.io.InputStream> response = coordinator.http().send(java.net.http.HttpRequest.newBuilder(coordinator.uri(path))
                .header("X-API-Key", apiKey).header("Accept", "text/event-stream").GET().build(), HttpResponse.BodyHandlers.ofInputStream());
        boolean stream = response.headers().firstValue("Content-Type").orElse("").startsWith("text/event-stream");
        String text;
        try (java.io.InputStream in = response.body()) {
            text = stream ? "" : new String(in.readAllBytes(), java.nio.charset.StandardCharsets.UTF_8);
        }
        return new StatusAndBody(response, text);
    }

    /** A response's status with a body read by the caller. */
    private record StatusAndBody(HttpResponse<?> response, String body) implements HttpResponse<String> {
        @Override
        public int statusCode() {
            return response.statusCode();
        }

        @Override
        public java.net.http.HttpRequest request() {
            return response.request();
        }

        @Override
        public Optional<HttpResponse<String>> previousResponse() {
            return Optional.empty();
        }

        @Override
        public java.net.http.HttpHeaders headers() {
            return response.headers();
        }

        @Override
        public Optional<javax.net.ssl.SSLSession> sslSession() {
            return response.sslSession();
        }

        @Override
        public java.net.URI uri() {
            return response.uri();
        }

        @Override
        public java.net.http.HttpClient.Version version() {
            return response.version();
        }
    }

    private static HttpResponse<String> anonymous(String path) throws Exception {
        return coordinator.http().send(java.net.http.HttpRequest.newBuilder(coordinator.uri(path)).GET().build(),
                HttpResponse.BodyHandlers.ofString());
    }
}
