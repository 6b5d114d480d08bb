# syntax=docker/dockerfile:1
# pristine: build with the full toolchain, run on a slim image as a non-root user.

FROM node:20-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Sources are not here yet: skip `prepare` (the TypeScript build) until they are.
RUN npm ci --ignore-scripts
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
RUN chmod +x dist/cli.js && ln -s /app/dist/cli.js /usr/local/bin/pristine
USER node
# Mount your own policies and manifests: -v $PWD/policies:/app/policies -v $PWD/manifests:/app/manifests
ENTRYPOINT ["pristine"]
CMD ["audit"]
