# The league feed of tests/deploy/compose.test.yml: `<league>.csv` over HTTP on :8000.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 \
 && rm -rf /var/lib/apt/lists/*
USER nobody
EXPOSE 8000
CMD ["python3", "-m", "http.server", "8000", "--directory", "/srv/games"]
