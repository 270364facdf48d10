# syntax=docker/dockerfile:1
# vallum in a container. Build (any platform buildx supports, e.g.
# linux/amd64, linux/arm64, linux/arm/v7):
#
#   docker build -t vallum .
#
# Run a bridge: it changes the host's kernel sets, so it needs the host's
# network namespace and CAP_NET_ADMIN:
#
#   docker run -d --name vallum --restart unless-stopped \
#     --network host --cap-add NET_ADMIN \
#     -v /etc/vallum:/etc/vallum:ro vallum --config /etc/vallum/vallum.yaml
#
# The process runs as the distroless "nonroot" user (65532), not root. A
# capability that --cap-add grants does not survive the exec into a non-root
# process by itself (Docker sets no ambient capabilities), so the binary
# carries it as a file capability (setcap cap_net_admin=ep below). The
# kernel then refuses to start it when the container lacks NET_ADMIN
# ("exec /vallum: operation not permitted"): add --cap-add NET_ADMIN to every
# run, also for `vallum broker` and `vallum ban` (without --network host they
# only get NET_ADMIN over their own network namespace). If a builder drops
# the file capability (xattrs lost between stages), netlink calls fail with
# "operation not permitted": run with --user 0 instead, which keeps Docker's
# reduced capability set plus NET_ADMIN.
#
# The go build line is the one contrib/build-static.sh runs.

FROM --platform=$BUILDPLATFORM golang:1.26 AS build
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG TARGETVARIANT=
ARG VERSION=dev
RUN apt-get update && apt-get install -y --no-install-recommends libcap2-bin \
	&& rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# GOARM only for 32-bit ARM (TARGETVARIANT v6/v7); MIPS routers lack an FPU
# and build without inlining and a few other code-growing compiler features,
# on Go's previous GC; MIPS and 32-bit ARM with 4 KB segment alignment,
# bcrypt-only broker passwords (vallum_small) and trimmed copies of six
# modules (contrib/trim-modules.sh), and MIPS without the web view
# (vallum_noweb), to stay under 10 MB (see build-static.sh).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	if [ "$TARGETARCH" = arm ]; then export GOARM="${TARGETVARIANT#v}"; fi; \
	gcflags= ldround= tags=nethttpomithttp2 goexp= modfile=; case "$TARGETARCH" in \
		mips | mipsle) gcflags="all=-l -d=noopendefer,variablemakethreshold=0,wrapglobalmapctl=2" goexp=nogreenteagc ;; esac; \
	case "$TARGETARCH" in mips | mipsle | arm) ldround="-R 0x1000" tags=nethttpomithttp2,vallum_small \
		modfile=-modfile=$(contrib/trim-modules.sh /tmp/trim) ;; esac; \
	case "$TARGETARCH" in mips | mipsle) tags=$tags,vallum_noweb ;; esac; \
	CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH GOMIPS=softfloat GOEXPERIMENT=$goexp \
		go build $modfile -trimpath -tags "$tags" -gcflags="$gcflags" -gcflags=runtime= -ldflags "-s -w $ldround -X main.version=$VERSION" -o /out/vallum ./cmd/vallum \
	&& setcap cap_net_admin=ep /out/vallum \
	&& mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
# No --chown here: changing a file's owner clears its file capabilities.
COPY --from=build /out/vallum /vallum
# An empty, writable --data-dir: a named volume mounted there starts with
# this ownership, so the broker can keep its state as the nonroot user.
COPY --from=build --chown=65532:65532 /out/data /var/lib/vallum
USER 65532:65532
ENTRYPOINT ["/vallum"]
