"""Settings every service shares; each service subclasses naming itself once,
`class Settings(ServiceSettings, service="webhooks", port=8004)`, which gives it its env prefix
(BILLSTREAM_WEBHOOKS_), its service name, its database (billstream_webhooks) and its HTTP port.

`BILLSTREAM_ENV` says where a process runs: `local` (what deploy/local sets) or `production`
(the default when unset). Each service lists its secrets with their development defaults in
`DEV_SECRETS`; outside local, a process refuses to start while any of them is missing or still
its default, and names the variable to set.
"""

from typing import Any, ClassVar, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class InsecureSettings(SystemExit):
    """Raised at start outside local mode; its message names every variable to set."""


class ServiceSettings(BaseSettings):
    """Read from environment variables named BILLSTREAM_<SERVICE>_<FIELD> (see each service)."""

    model_config = SettingsConfigDict(env_prefix="BILLSTREAM_", extra="ignore")
    # field name -> its development default, which only local mode accepts.
    DEV_SECRETS: ClassVar[dict[str, str]] = {}

    env: Literal["local", "production"] = Field("production", validation_alias="BILLSTREAM_ENV")
    service_name: str = "billstream"
    database_url: str = "postgresql://postgres@127.0.0.1:55432/postgres"
    kafka_bootstrap: str = "127.0.0.1:59092"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # JSON logs unless stderr is a terminal; force with true/false.
    log_json: bool | None = None
    log_level: str = "INFO"
    db_pool_min: int = 1
    db_pool_max: int = 10
    # How often the relay and projection runners poll when no notification arrives.
    poll_interval_s: float = 1.0
    # Rate limits (shared/ratelimit.py): per API key, and per client address on /pay/* and
    # /webhooks/*. BILLSTREAM_RATE_LIMITS=false turns them off everywhere (make bench does).
    rate_limits: bool = Field(True, validation_alias="BILLSTREAM_RATE_LIMITS")
    rate_limit_per_key_per_s: float = 100
    rate_limit_per_key_burst: int = 200
    rate_limit_per_address_per_s: float = 50
    rate_limit_per_address_burst: int = 200

    def __init_subclass__(cls, *, service: str | None = None, port: int | None = None, **kwargs: Any) -> None:
        """The service's own prefix and defaults, from the class keywords `service` and `port`.
        Runs inside class creation before pydantic collects the fields, so a default set here is
        the field's default (as if written in the class body); a subclass without the keywords
        inherits them."""
        super().__init_subclass__(**kwargs)
        if service is None and port is None:
            return
        if service is None or port is None:
            raise TypeError(f"{cls.__name__}: give both service= and port=")
        cls.model_config["env_prefix"] = f"BILLSTREAM_{service.upper()}_"  # this class's own copy
        role = f"billstream_{service}"  # database, user and password alike (deploy/local)
        defaults = {
            "service_name": service,
            "database_url": f"postgresql://{role}:{role}@127.0.0.1:55432/{role}",
            "http_port": port,
        }
        for name, default in defaults.items():
            setattr(cls, name, default)

    def insecure_secrets(self) -> list[str]:
        """The environment variables of secrets that are missing or still their development default."""
        prefix = self.model_config.get("env_prefix", "")
        return [
            f"{prefix}{name.upper()}"
            for name, dev in self.DEV_SECRETS.items()
            if getattr(self, name) in (None, "", dev)
        ]

    def check_secrets(self, log: Any) -> None:
        """Refuse to run with development secrets outside local mode; in local mode, say so once."""
        insecure = self.insecure_secrets()
        if not insecure:
            return
        if self.env != "local":
            raise InsecureSettings(
                f"{self.service_name}: refusing to start with BILLSTREAM_ENV={self.env}: "
                f"set {', '.join(insecure)} (missing or a development default)"
            )
        log.warning("development secrets in use (BILLSTREAM_ENV=local)", variables=insecure)
