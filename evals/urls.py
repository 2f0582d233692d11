"""Experiment pages, mounted under /experiments/."""

from django.urls import path

from evals import views

urlpatterns = [
    path("", views.experiment_list, name="experiment-list"),
    path("<slug:slug>/", views.experiment_detail, name="experiment-detail"),
    path("<slug:slug>/compare/", views.experiment_compare, name="experiment-compare"),
    path("<slug:slug>/import/", views.experiment_import, name="experiment-import"),
    path("<slug:slug>/runs/<int:sequence>/register/", views.experiment_run_register, name="experiment-run-register"),
]
