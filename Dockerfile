# The operator's image: `ecr-tag-operator run`, as a non-root user (uid/gid 65532, the uid the Helm
# chart's securityContext runs as). Build from the repository root: docker build -t ecr-tag-operator .
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
# README.md is optional (pyproject names it); the glob keeps COPY from failing without it.
COPY pyproject.toml README.md* ./
COPY operator ./operator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /install /usr/local
RUN groupadd --system --gid 65532 operator \
 && useradd --system --uid 65532 --gid 65532 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin operator
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 9090
ENTRYPOINT ["ecr-tag-operator"]
CMD ["run"]
