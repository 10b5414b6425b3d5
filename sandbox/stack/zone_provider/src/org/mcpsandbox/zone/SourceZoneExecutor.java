package org.mcpsandbox.zone;

import jakarta.ws.rs.core.Response;
import org.jboss.logging.Logger;
import org.keycloak.models.ClientModel;
import org.keycloak.models.KeycloakSession;
import org.keycloak.representations.idm.ClientPolicyExecutorConfigurationRepresentation;
import org.keycloak.services.clientpolicy.ClientPolicyContext;
import org.keycloak.services.clientpolicy.ClientPolicyException;
import org.keycloak.services.clientpolicy.executor.ClientPolicyExecutorProvider;

/**
 * Refuses a token request of a client limited to a network zone when it comes from another source address.
 *
 * <p>A client is limited by its attribute {@value #ZONE_ATTRIBUTE}: the one address (such as 127.0.0.2) its
 * token requests must come from. The address compared is the peer address of the request's connection, so
 * Keycloak must not sit behind a proxy that rewrites it. Clients without the attribute are not affected.
 */
public class SourceZoneExecutor implements ClientPolicyExecutorProvider<ClientPolicyExecutorConfigurationRepresentation> {

    public static final String ZONE_ATTRIBUTE = "sandbox.zone";
    private static final Logger LOG = Logger.getLogger(SourceZoneExecutor.class);

    private final KeycloakSession session;

    public SourceZoneExecutor(KeycloakSession session) {
        this.session = session;
    }

    @Override
    public String getProviderId() {
        return SourceZoneExecutorFactory.PROVIDER_ID;
    }

    @Override
    public void executeOnEvent(ClientPolicyContext context) throws ClientPolicyException {
        switch (context.getEvent()) {
            case SERVICE_ACCOUNT_TOKEN_REQUEST:
            case TOKEN_REQUEST:
            case TOKEN_REFRESH:
            case TOKEN_EXCHANGE_REQUEST:
            case BACKCHANNEL_TOKEN_REQUEST:
            case DEVICE_TOKEN_REQUEST:
            case RESOURCE_OWNER_PASSWORD_CREDENTIALS_REQUEST:
            case JWT_AUTHORIZATION_GRANT:
                check();
                return;
            default:
                return;
        }
    }

    private void check() throws ClientPolicyException {
        ClientModel client = session.getContext().getClient();
        if (client == null) {
            return;
        }
        String zone = client.getAttribute(ZONE_ATTRIBUTE);
        if (zone == null || zone.isBlank()) {
            return;
        }
        String source = session.getContext().getConnection().getRemoteAddr();
        if (zone.trim().equals(source)) {
            return;
        }
        LOG.infof("token request of client %s from %s refused: its zone is %s", client.getClientId(), source, zone);
        throw new ClientPolicyException(
            "unauthorized_client",
            "token requests of this client must come from its network zone " + zone.trim() + ", not " + source,
            Response.Status.FORBIDDEN);
    }
}
