package dev.kage.coordinator.auth;

import dev.kage.coordinator.api.ErrorBody;
import io.micronaut.core.async.publisher.Publishers;
import io.micronaut.http.HttpRequest;
import io.micronaut.http.HttpResponse;
import io.micronaut.http.MutableHttpResponse;
import io.micronaut.http.annotation.Filter;
import io.micronaut.http.filter.HttpServerFilter;
import io.micronaut.http.filter.ServerFilterChain;
import java.util.Optional;
import org.reactivestreams.Publisher;

/**
 * Every {@code /api/**} request must carry a valid {@code X-API-Key}; the key's tenant is attached to
 * the request as {@link #TENANT}. Missing or wrong keys get a 401 JSON body.
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

    private final ApiKeys keys;

    public ApiKeyFilter(ApiKeys keys) {
        this.keys = keys;
    }

    @Override
    public Publisher<MutableHttpResponse<?>> doFilter(HttpRequest<?> request, ServerFilterChain chain) {
        String presented = request.getHeaders().get(HEADER);
        if (presented == null || presented.isBlank()) {
            return Publishers.just(HttpResponse.unauthorized().body(
                    ErrorBody.of("unauthorized", "missing " + HEADER + " header")));
        }
        Optional<String> tenant = keys.tenantOf(presented.trim());
        if (tenant.isEmpty()) {
            return Publishers.just(HttpResponse.unauthorized().body(ErrorBody.of("unauthorized", "invalid API key")));
        }
        request.setAttribute(TENANT, tenant.get());
        return chain.proceed(request);
    }
}
