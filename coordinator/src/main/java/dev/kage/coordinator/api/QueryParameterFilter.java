package dev.kage.coordinator.api;

import dev.kage.coordinator.api.ErrorBody.FieldError;
import io.micronaut.core.async.publisher.Publishers;
import io.micronaut.http.HttpRequest;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.MutableHttpResponse;
import io.micronaut.http.annotation.Filter;
import io.micronaut.http.filter.HttpServerFilter;
import io.micronaut.http.filter.ServerFilterChain;
import io.micronaut.web.router.RouteAttributes;
import io.micronaut.web.router.RouteMatch;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.Set;
import java.util.TreeSet;
import java.util.stream.Collectors;
import org.reactivestreams.Publisher;

/**
 * Refuses, with 400 and one entry per parameter, query parameters a route under {@code /api} does not read
 * ({@link QueryParameters}) and those it reads once given more than once. Runs after the API key is checked (an
 * unauthenticated request gets its 401 first). Stateless; thread-safe.
 */
@Filter("/api/**")
public class QueryParameterFilter implements HttpServerFilter {
    /** After {@code ApiKeyFilter} (order 0). */
    static final int ORDER = 100;

    @Override
    public int getOrder() {
        return ORDER;
    }

    @Override
    public Publisher<MutableHttpResponse<?>> doFilter(HttpRequest<?> request, ServerFilterChain chain) {
        Optional<RouteMatch<?>> route = RouteAttributes.getRouteMatch(request);
        if (route.isEmpty() || request.getParameters().isEmpty()) {
            return chain.proceed(request);
        }
        Set<String> accepted = new TreeSet<>(List.of(route.get().getAnnotationMetadata().stringValues(QueryParameters.class)));
        Set<String> repeatable = Set.of(route.get().getAnnotationMetadata().stringValues(QueryParameters.class, "repeatable"));
        List<FieldError> errors = new ArrayList<>();
        for (String name : new TreeSet<>(request.getParameters().names())) {
            if (!accepted.contains(name)) {
                errors.add(new FieldError(ErrorBody.printable(name), accepted.isEmpty()
                        ? "is not a parameter of this route, which takes no query parameters"
                        : "is not a parameter of this route; it takes " + String.join(", ", accepted)));
            } else if (!repeatable.contains(name) && request.getParameters().getAll(name).size() > 1) {
                errors.add(new FieldError(name, "is given " + request.getParameters().getAll(name).size()
                        + " times; give it once"));
            }
        }
        if (errors.isEmpty()) {
            return chain.proceed(request);
        }
        String fields = errors.stream().map(e -> e.field() + ": " + e.message()).collect(Collectors.joining("; "));
        return Publishers.just(HttpResponse.badRequest(new ErrorBody("validation_failed", "the request is invalid: " + fields,
                errors)));
    }

}
