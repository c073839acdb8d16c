# One image with all three binaries: importer-worker, importer-admin, importer-sim.
# Multi-stage: dependencies are built in their own cached layer from the manifests alone, so a
# source change rebuilds only the workspace crates. Built with the `max` profile (thin LTO, one
# codegen unit): `release` is tuned for a quick first build, `max` for the worker's CPU.

FROM rust:1-bookworm AS build
WORKDIR /src

# 1. Dependency layer: manifests plus empty crate roots.
COPY Cargo.toml Cargo.lock ./
COPY importer-core/Cargo.toml importer-core/
COPY importer-worker/Cargo.toml importer-worker/
COPY importer-admin/Cargo.toml importer-admin/
COPY importer-sim/Cargo.toml importer-sim/
COPY bench/Cargo.toml bench/
COPY migrations migrations
RUN for c in importer-core importer-worker importer-admin importer-sim bench; do \
        mkdir -p $c/src && echo '' > $c/src/lib.rs && echo 'fn main() {}' > $c/src/main.rs; \
    done \
    && mkdir -p importer-core/benches && echo 'fn main() {}' > importer-core/benches/decode.rs \
    && cargo build --profile max --locked -p importer-worker -p importer-admin -p importer-sim

# 2. The workspace itself.
COPY . .
RUN touch importer-*/src/*.rs bench/src/*.rs \
    && cargo build --profile max --locked -p importer-worker -p importer-admin -p importer-sim

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home importer
COPY --from=build /src/target/max/importer-worker /src/target/max/importer-admin /src/target/max/importer-sim /usr/local/bin/
COPY importer-sim/sim.example.toml /etc/importer/sim.toml
USER importer
EXPOSE 9090 8081 8082
CMD ["importer-worker"]
