"""URLs of image requests (included in the "lifecycle" namespace, no app_name).

Everything under /lifecycle/requests/public/ is public: customers use it without a session.
"""

from __future__ import annotations

from django.urls import path

from lifecycle import views_requests as views

urlpatterns = [
    path("requests/", views.request_list, name="requests"),
    path("requests/<int:pk>/", views.request_detail, name="request_detail"),
    path("requests/<int:pk>/status/", views.request_status, name="request_status"),
    path("requests/public/new/", views.request_new, name="request_new"),
    path("requests/public/thanks/", views.request_thanks, name="request_thanks"),
    path("requests/public/confirm/<str:token>/", views.request_confirm, name="request_confirm"),
    path(
        "requests/public/stop/<str:token>/", views.request_unsubscribe, name="request_unsubscribe"
    ),
]
