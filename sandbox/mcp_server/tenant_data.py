"""Each tenant's data: generated with Faker from a seed derived from the tenant's name, kept per tenant.

The same tenant always gets the same customers, invoices, services, logs and deployments (until a
tool changes them); two tenants never share a record. Nothing here knows about tokens: callers
pass the tenant the verified issuer stands for.
"""

from __future__ import annotations

import datetime
import hashlib
from dataclasses import dataclass
from typing import Any

from faker import Faker

EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)  # fixed, so data does not depend on today
LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARNING", "ERROR")
SAVED_QUERIES = ("daily_active_users", "signups_by_country", "revenue_by_month")


def seed_for(tenant: str) -> int:
    return int.from_bytes(hashlib.sha256(f"mcp-sandbox tenant {tenant}".encode()).digest()[:8], "big")


@dataclass
class TenantData:
    tenant: str
    company: str
    currency: str
    customers: list[str]
    invoices: list[dict[str, Any]]
    services: list[str]
    logs: dict[str, list[dict[str, Any]]]
    deployments: dict[tuple[str, str], dict[str, Any]]
    events: list[dict[str, Any]]

    def next_invoice_id(self) -> str:
        return invoice_id(self.tenant, len(self.invoices) + 1)


def invoice_id(tenant: str, number: int) -> str:
    prefix = tenant[:6] if tenant.isascii() and tenant.isalnum() else hashlib.sha256(tenant.encode()).hexdigest()[:6]
    return f"INV-{prefix.upper()}-{number:05d}"


def generate(tenant: str, environments: tuple[str, ...]) -> TenantData:
    fake = Faker()
    fake.seed_instance(seed_for(tenant))

    def moment(days: int) -> str:
        at = EPOCH + datetime.timedelta(seconds=fake.random_int(0, days * 86400))
        return at.isoformat().replace("+00:00", "Z")

    currency = fake.random_element(("EUR", "USD", "GBP", "CHF"))
    customers = list(dict.fromkeys(fake.company() for _ in range(12)))
    services = list(dict.fromkeys(f"{fake.word()}-{fake.random_element(('api', 'worker', 'web'))}" for _ in range(5)))
    data = TenantData(
        tenant=tenant,
        company=fake.company(),
        currency=currency,
        customers=customers,
        invoices=[],
        services=services,
        logs={},
        deployments={},
        events=[],
    )
    for number in range(1, 26):
        data.invoices.append(
            {
                "id": invoice_id(tenant, number),
                "tenant": tenant,
                "customer": fake.random_element(customers),
                "amount_cents": fake.random_int(5_000, 2_500_000),
                "currency": currency,
                "status": fake.random_element(("paid", "paid", "open", "overdue")),
                "issued_at": moment(150),
            }
        )
    for service in services:
        data.logs[service] = sorted(
            (
                {"at": moment(30), "service": service, "level": fake.random_element(LEVELS), "message": fake.sentence()}
                for _ in range(40)
            ),
            key=lambda line: line["at"],
        )
        for environment in environments:
            data.deployments[(service, environment)] = {
                "tenant": tenant,
                "service": service,
                "environment": environment,
                "version": f"{fake.random_int(1, 4)}.{fake.random_int(0, 20)}.{fake.random_int(0, 9)}",
                "deployed_at": moment(60),
                "deployed_by": fake.user_name(),
            }
    data.events = [
        {"day": (EPOCH + datetime.timedelta(days=day)).date().isoformat(), "country": fake.country_code()}
        | {"active_users": fake.random_int(50, 5000), "signups": fake.random_int(0, 80)}
        | {"revenue_cents": fake.random_int(10_000, 900_000)}
        for day in range(180)
    ]
    return data


class TenantDirectory:
    """Tenant data generated on first use and kept for the life of the server."""

    def __init__(self, environments: tuple[str, ...]) -> None:
        self._environments = environments
        self._tenants: dict[str, TenantData] = {}

    def __getitem__(self, tenant: str) -> TenantData:
        if tenant not in self._tenants:
            self._tenants[tenant] = generate(tenant, self._environments)
        return self._tenants[tenant]
