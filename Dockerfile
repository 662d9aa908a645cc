# walcast: build on Debian bookworm, run with only the runtime libraries as a non-root user.
FROM debian:bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake gcc make pkg-config libc6-dev \
      libpq-dev libjansson-dev libhiredis-dev libfyaml-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY include include
COPY base base
COPY replication replication
COPY config config
COPY sinks sinks
COPY src src
COPY docs docs
RUN cmake -B build -DWC_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=Release \
 && cmake --build build -j"$(nproc)" \
 && strip build/walcast

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpq5 libjansson4 libhiredis0.14 libfyaml0 libmicrohttpd12 \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin walcast
COPY --from=build /src/build/walcast /usr/local/bin/walcast
COPY examples /etc/walcast/examples
USER walcast
# The metrics endpoint (metrics.listen: 0.0.0.0:9187 in a container; /healthz and /readyz for probes).
EXPOSE 9187
ENTRYPOINT ["/usr/local/bin/walcast"]
CMD ["run", "-c", "/etc/walcast/walcast.yaml"]
