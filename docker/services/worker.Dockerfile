# The worker's image: the base image plus the PostgreSQL client tools its backup and restore
# activities run (copied from the host with the libraries ldd names, like the base image's node).
# The code is not baked in: the worker builds inference images from the checkout (esbuild, the
# models, docker/inference), so the container mounts the checkout read-only and .marquee read-write.
FROM marquee-node:20
COPY rootfs/ /
# The build context carries every file as 0644.
RUN ["/bin/chmod", "755", "/usr/local/bin/pg_dump", "/usr/local/bin/pg_restore"]
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch(process.env.HEALTH_URL).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
LABEL marquee=1 marquee.component=worker
