# smtp-gateway in a container: slim Python, non-root, data on a volume.
#   docker build -t smtp-gateway .
#   docker run -p 2525:2525 -v gwdata:/var/lib/smtp-gateway smtp-gateway
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir ".[fast]"

FROM python:3.11-slim
RUN useradd --system --home-dir /var/lib/smtp-gateway --shell /usr/sbin/nologin gateway \
 && mkdir -p /var/lib/smtp-gateway /etc/smtp-gateway \
 && chown gateway:gateway /var/lib/smtp-gateway && chmod 0700 /var/lib/smtp-gateway
COPY --from=build /opt/venv /opt/venv
COPY config.yaml /etc/smtp-gateway/config.yaml
COPY policies /etc/smtp-gateway/policies
# In a container the relay listener must listen on all interfaces of the
# container; who may relay is still limited by `networks` (set it to your
# Docker network's range, e.g. 172.16.0.0/12).
RUN sed -i -e 's|^data_dir: .*|data_dir: /var/lib/smtp-gateway|' \
           -e 's|^    address: 127.0.0.1|    address: 0.0.0.0|' /etc/smtp-gateway/config.yaml
ENV PATH=/opt/venv/bin:$PATH SMTP_GATEWAY_CONFIG=/etc/smtp-gateway/config.yaml
USER gateway
VOLUME ["/var/lib/smtp-gateway"]
EXPOSE 2525
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD python -c "import socket,sys; s=socket.create_connection(('127.0.0.1',2525),3); sys.exit(0 if s.recv(3)==b'220' else 1)"
STOPSIGNAL SIGTERM
ENTRYPOINT ["smtp-gateway"]
CMD ["serve", "-c", "/etc/smtp-gateway/config.yaml"]
