# Strata worker and API image. The same image runs either: the command picks.
FROM node:20-bookworm-slim
WORKDIR /app
COPY package.json package-lock.json ./
# Exactly the lock file, runtime dependencies only (tsx, which runs the TypeScript, is one).
RUN npm ci --omit=dev --no-audit --no-fund
COPY schemas ./schemas
COPY workflows ./workflows
COPY activities ./activities
COPY workers ./workers
COPY api ./api
COPY client ./client
COPY store ./store
COPY cli ./cli
COPY examples ./examples
ENV NODE_ENV=production
USER node
CMD ["npx", "tsx", "workers/worker.ts"]
