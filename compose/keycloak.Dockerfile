# Keycloak from the same distribution zip as the local runtime, on Debian's JRE 17, laid out like the
# official image (/opt/keycloak, user 1000, entrypoint kc.sh), so either image runs the same command.
# Context: a directory holding keycloak.zip (`python -m sandbox.stack.images` makes it).
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS unpacked
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends unzip
COPY keycloak.zip /tmp/keycloak.zip
RUN unzip -q /tmp/keycloak.zip -d /tmp/unpacked && mv /tmp/unpacked/keycloak-* /opt/keycloak

FROM ${BASE_IMAGE}
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openjdk-17-jre-headless \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 1000 --gid 0 --home-dir /opt/keycloak --no-create-home keycloak
COPY --from=unpacked --chown=1000:0 /opt/keycloak /opt/keycloak
USER 1000
# Built once here with the sandbox's build options, so `kc.sh start` with the same options starts at once.
ARG KC_BUILD_OPTIONS
RUN /opt/keycloak/bin/kc.sh build ${KC_BUILD_OPTIONS}
WORKDIR /opt/keycloak
ENTRYPOINT ["/opt/keycloak/bin/kc.sh"]
