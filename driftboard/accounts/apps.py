from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "driftboard.accounts"
    label = "accounts"
    verbose_name = "Accounts"
