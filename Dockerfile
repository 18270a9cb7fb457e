# syntax=docker/dockerfile:1
#
# A small static image of scopemem: a pure-Go binary (the SQLite driver is
# modernc.org/sqlite, no cgo) on distroless/static, running as non-root.
#
#   docker build -t scopemem --build-arg VERSION=$(git describe --tags --always) .
#   docker run --rm scopemem version
#
# Without arguments the container serves streamable HTTP on :8080; it needs
# --jwt-secret-file or --jwks-url (see deploy/compose.yaml). SQLite data, if
# used, lives under /data (mount a volume there).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux go build -trimpath -buildvcs=false \
        -ldflags="-s -w -X github.com/scopemem/scopemem/internal/app.Version=${VERSION}" \
        -o /out/scopemem ./cmd/scopemem \
    && mkdir -p /out/data/scopemem

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/scopemem /usr/local/bin/scopemem
# nonroot is uid/gid 65532 in distroless.
COPY --from=build --chown=65532:65532 /out/data /data
ENV XDG_DATA_HOME=/data
# Listening beyond loopback needs the URL clients use, which tokens must name
# as their audience: override it with -e SCOPEMEM_PUBLIC_URL=https://...
ENV SCOPEMEM_PUBLIC_URL=http://127.0.0.1:8080/mcp
VOLUME /data
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/scopemem"]
CMD ["serve", "--http", "0.0.0.0:8080"]
