"""URLs of customers and notices (included in the "lifecycle" namespace, no app_name).

Everything under /lifecycle/unsubscribe/ is public: recipients follow it without a session.
"""

from __future__ import annotations

from django.urls import path

from lifecycle import views_notices as views

urlpatterns = [
    path("customers/", views.customers, name="customers"),
    path("customers/import/", views.customers_import, name="customers_import"),
    path("notices/", views.notices_attention, name="notices"),
    path("notices/<int:pk>/decide/", views.notice_decide, name="notice_decide"),
    path("notices/image/<str:label>/panel/", views.notices_panel, name="notices_panel"),
    path("notices/image/<str:label>/preview/", views.notice_preview, name="notice_preview"),
    path("notices/image/<str:label>/test/", views.notice_send_test, name="notice_send_test"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
