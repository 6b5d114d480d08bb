# syntax=docker/dockerfile:1
# pristine: build with the full toolchain, run the daemon on a slim image as a non-root user.

FROM node:20-slim AS build
# better-sqlite3 compiles from source when no prebuilt binary fits.
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# Sources are not here yet: skip `prepare` (the TypeScript build), then build the native addon alone.
RUN npm ci --ignore-scripts && npm rebuild better-sqlite3
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev --ignore-scripts

FROM node:20-slim
ENV NODE_ENV=production \
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED=true
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY policies ./policies
RUN chmod +x dist/cli.js \
 && ln -s /app/dist/cli.js /usr/local/bin/pristine \
 && mkdir -p /var/lib/pristine /app/manifests \
 && chown node:node /var/lib/pristine
# The state (findings, alerts, the replacement journal, the Slack outbox) must outlive the container.
VOLUME ["/var/lib/pristine"]
USER node
EXPOSE 9464
HEALTHCHECK --interval=60s --timeout=5s --start-period=120s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9464/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# Mount your policies and manifests: -v $PWD/policies:/app/policies:ro -v $PWD/manifests:/app/manifests:ro
# Other commands: docker run IMAGE audit | run --dry-run | status --state /var/lib/pristine/pristine.db
ENTRYPOINT ["pristine"]
CMD ["daemon", "--state", "/var/lib/pristine/pristine.db", "--listen", "0.0.0.0:9464"]
