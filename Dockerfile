FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY console console
COPY schema schema
COPY partners partners
COPY members members
COPY points points
COPY ledger ledger
COPY core core
COPY settlement settlement
COPY analytics analytics
COPY outbox outbox
COPY db db
COPY bench bench
RUN pip install --no-cache-dir .
ENV COALITION_DATA_DIR=/data
EXPOSE 8000
CMD ["coalition", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
