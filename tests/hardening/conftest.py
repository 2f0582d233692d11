"""Fixtures of the hardening tests: one signed-in user per role, and clients acting as them."""

from django.contrib.auth.models import Group
from django.test import Client
from rest_framework.test import APIClient

from driftboard.roles import ADMIN, READER, REVIEWER
from tests.conftest import token_client
from tests.factories import UserFactory

ROLES = ("anonymous", READER, REVIEWER, ADMIN, "staff")


def role_user(role: str):
    """A user holding `role`: a member of that group, or a staff member outside every group."""
    if role == "anonymous":
        return None
    if role == "staff":
        return UserFactory(username="staff-member", is_staff=True)
    user = UserFactory(username=f"{role}-member")
    group, _ = Group.objects.get_or_create(name=role)  # a flushed transactional database lost the migrated rows
    user.groups.add(group)
    return user


def api_client_as(role: str) -> APIClient:
    user = role_user(role)
    return APIClient() if user is None else token_client(user)


def page_client_as(role: str) -> Client:
    client = Client()
    user = role_user(role)
    if user is not None:
        client.force_login(user)
    return client
