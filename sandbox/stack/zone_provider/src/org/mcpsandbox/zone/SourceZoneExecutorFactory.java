package org.mcpsandbox.zone;

import java.util.List;
import org.keycloak.Config;
import org.keycloak.models.KeycloakSession;
import org.keycloak.models.KeycloakSessionFactory;
import org.keycloak.provider.ProviderConfigProperty;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProvider;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProviderFactory;

/** Registers {@link SourceZoneExecutor} as the client policy executor {@value #PROVIDER_ID}. */
public class SourceZoneExecutorFactory implements ClientPolicyExecutorProviderFactory {

    public static final String PROVIDER_ID = "sandbox-source-zone";

    @Override
    public ClientPolicyExecutorProvider create(KeycloakSession session) {
        return new SourceZoneExecutor(session);
    }

    @Override
    public void init(Config.Scope config) {
    }

    @Override
    public void postInit(KeycloakSessionFactory factory) {
    }

    @Override
    public void close() {
    }

    @Override
    public String getId() {
        return PROVIDER_ID;
    }

    @Override
    public String getHelpText() {
        return "Refuses token requests of a client whose attribute sandbox.zone names another source address.";
    }

    @Override
    public List<ProviderConfigProperty> getConfigProperties() {
        return List.of();
    }
}
