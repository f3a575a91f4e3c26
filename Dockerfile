# Keyledger image: a static binary on a slim Debian base, running as an unprivileged user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o /out/keyledger ./cmd/keyledger

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home /var/lib/keyledger keyledger \
 && mkdir -p /var/lib/keyledger && chown keyledger /var/lib/keyledger
COPY --from=build /out/keyledger /usr/local/bin/keyledger
USER keyledger
ENV KEYLEDGER_ADDR=0.0.0.0:8080 KEYLEDGER_DATA_DIR=/var/lib/keyledger
EXPOSE 8080
ENTRYPOINT ["keyledger"]
CMD ["serve"]
