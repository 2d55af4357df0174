"""The keyshift services' effective configuration against the compose
setup: S3 bucket, storage options and endpoint, Kafka brokers, topics and
groups, the shared pseudonymization secret, one rollout controller."""

from __future__ import annotations

import re
from urllib.parse import urlparse

from .util import Report, command_of, host_port
from .network import check_address, check_broker


# object_store's S3 keys (AmazonS3ConfigKey, ClientConfigKey with `aws_`) and
# deltalake's own S3 keys that keyshift passes through in store.storage_options.
KNOWN_STORAGE_OPTIONS = {
    # object_store AmazonS3ConfigKey (and aliases)
    "aws_access_key_id", "access_key_id", "aws_secret_access_key", "secret_access_key",
    "aws_default_region", "default_region", "aws_region", "region",
    "aws_bucket", "aws_bucket_name", "bucket_name", "bucket",
    "aws_endpoint_url", "aws_endpoint", "endpoint_url", "endpoint", "aws_endpoint_url_s3",
    "aws_session_token", "aws_token", "session_token", "token",
    "aws_virtual_hosted_style_request", "virtual_hosted_style_request",
    "aws_s3_express", "s3_express", "aws_imdsv1_fallback", "imdsv1_fallback",
    "aws_metadata_endpoint", "metadata_endpoint", "aws_unsigned_payload", "unsigned_payload",
    "aws_checksum_algorithm", "checksum_algorithm",
    "aws_container_credentials_relative_uri", "container_credentials_relative_uri",
    "aws_container_credentials_full_uri", "container_credentials_full_uri",
    "aws_container_authorization_token_file", "container_authorization_token_file",
    "aws_web_identity_token_file", "web_identity_token_file",
    "aws_role_arn", "role_arn", "aws_role_session_name", "role_session_name",
    "aws_endpoint_url_sts", "endpoint_url_sts", "aws_skip_signature", "skip_signature",
    "aws_copy_if_not_exists", "copy_if_not_exists", "aws_conditional_put", "conditional_put",
    "aws_disable_tagging", "disable_tagging", "aws_request_payer", "request_payer",
    "aws_server_side_encryption", "server_side_encryption", "aws_sse_kms_key_id",
    "sse_kms_key_id", "aws_sse_bucket_key_enabled", "sse_bucket_key_enabled",
    "aws_sse_customer_key_base64", "sse_customer_key_base64",
    # object_store ClientConfigKey (bare or with the aws_ prefix)
    *(p + k for p in ("", "aws_") for k in (
        "allow_http", "allow_invalid_certificates", "connect_timeout", "default_content_type",
        "http1_only", "http2_only", "http2_keep_alive_interval", "http2_keep_alive_timeout",
        "http2_keep_alive_while_idle", "http2_max_frame_size", "pool_idle_timeout",
        "pool_max_idle_per_host", "proxy_url", "proxy_ca_certificate", "proxy_excludes",
        "randomize_addresses", "timeout", "user_agent")),
    # deltalake-aws
    "aws_s3_allow_unsafe_rename", "aws_s3_locking_provider", "delta_dynamo_table_name",
    "aws_s3_pool_idle_timeout_seconds", "aws_sts_pool_idle_timeout_seconds",
    "aws_s3_get_internal_server_error_retries", "aws_profile",
}
# Subcommands that run the store pipeline (pseudonymize and write).
STORE_SUBCOMMANDS = {"run", "ingest"}


def check_effective_config(services: dict, effective: dict, subcommand: dict, report: Report) -> None:
    env_of = {n: s.get("environment") or {} for n, s in services.items()}
    created_topics = set()
    buckets = set()
    for name, svc in services.items():
        cmd = " ".join(command_of(svc) + list(svc.get("entrypoint") or []))
        if "kafka-topics" in cmd:
            created_topics |= set(re.findall(r"--topic[ =]([\w.\-]+)", cmd))
        if "create-bucket" in cmd:
            for b in re.findall(r"--bucket[ =]\"?(\$?\{?\w+\}?|[\w.\-]+)\"?", cmd):
                b = b.strip("${}")
                buckets.add(env_of[name].get(b, b) if b.isupper() else b)
    secrets_used = set()
    controllers, groups = [], {}
    for name, cfg in effective.items():
        svc = services[name]
        sub = subcommand.get(name)
        store, kafka = cfg["store"], cfg["kafka"]
        # object store
        uri = store.get("uri")
        if sub in STORE_SUBCOMMANDS and uri:
            u = urlparse(uri)
            if u.scheme == "s3":
                if buckets and u.netloc not in buckets:
                    report.problem(name, f"store.uri {uri}: bucket {u.netloc} is not the one created ({', '.join(sorted(buckets))})")
                opts = store.get("storage_options") or {}
                for key in sorted(opts):
                    if key not in KNOWN_STORAGE_OPTIONS:
                        report.problem(name, f"store.storage_options.{key} is not a known object_store / deltalake S3 storage option")
                endpoint = opts.get("aws_endpoint") or opts.get("aws_endpoint_url") or opts.get("endpoint")
                if endpoint:
                    check_address(name, "store.storage_options.aws_endpoint", urlparse(endpoint).hostname,
                                  urlparse(endpoint).port or 80, services, effective, report)
        # kafka
        brokers = kafka.get("brokers")
        if brokers:
            for b in brokers.split(","):
                host, port = host_port(b.strip())
                check_broker(name, host, port, services, report)
            topics = {kafka["topic"]}
            if cfg["rollout"]["rollouts"]:
                topics.add(cfg["rollout"]["decisions_topic"])
            for t in sorted(topics):
                if created_topics and t not in created_topics:
                    report.problem(name, f"uses Kafka topic {t}, which is not created ({', '.join(sorted(created_topics))})")
            if sub in STORE_SUBCOMMANDS:
                groups.setdefault(kafka["group_id"], []).append(name)
        # the pseudonymization secret
        if sub in STORE_SUBCOMMANDS:
            secret_file = cfg["ingest"].get("secret_file")
            mounted = {f"/run/secrets/{s.get('target') or s['source']}": s["source"]
                       for s in svc.get("secrets") or []}
            if not secret_file:
                report.problem(name, "ingest.secret_file is unset: each process would make its own secret in its data dir")
            elif secret_file not in mounted:
                report.problem(name, f"ingest.secret_file {secret_file} is not one of its secrets ({', '.join(mounted) or 'none'})")
            else:
                secrets_used.add(mounted[secret_file])
        if cfg["rollout"]["rollouts"]:
            controllers.append(name)
    if len(secrets_used) > 1:
        report.problem("secrets", f"store writers use different pseudonymization secrets: {sorted(secrets_used)}")
    if len(controllers) > 1:
        report.problem("rollout", f"rollouts are configured in {controllers}: one controller only")
    for group, members in sorted(groups.items()):
        report.note(f"consumer group {group}: {', '.join(members)}")
    if controllers:
        report.note(f"rollout controller: {controllers[0]}")
