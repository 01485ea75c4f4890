FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY api api
COPY schema schema
COPY partners partners
COPY members members
COPY ledger ledger
COPY settlement settlement
COPY db db
COPY bench bench
RUN pip install --no-cache-dir .
ENV COALITION_DATA_DIR=/data
EXPOSE 8000
CMD ["coalition", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
