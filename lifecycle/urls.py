"""URLs of the lifecycle app, grouped by concern as lifecycle/views/ is.

Everything under /lifecycle/unsubscribe/ and /lifecycle/requests/public/ is public:
recipients follow the first from their emails, customers use the second without a session.
"""

from __future__ import annotations

from django.urls import path

from lifecycle.views import (
    adoption,
    customers,
    notices,
    parity,
    releases,
    requests,
    timeline,
    triggers,
)

app_name = "lifecycle"
urlpatterns = [
    # Releases
    path("versions/<int:version_id>/release/", releases.release, name="release"),
    path("versions/<int:version_id>/withdraw/", releases.withdraw, name="withdraw"),
    path("versions/<int:version_id>/release-panel/", releases.release_panel, name="release_panel"),
    path("versions/<int:version_id>/release-notes/", releases.release_notes, name="release_notes"),
    path("images/<slug:label>/releases/", releases.release_history, name="release_history"),
    path("feed.json", releases.catalogue_feed, name="feed"),
    # Customers and notices
    path("customers/", customers.customers, name="customers"),
    path("customers/import/", customers.customers_import, name="customers_import"),
    path("notices/", notices.notices_attention, name="notices"),
    path("notices/<int:pk>/decide/", notices.notice_decide, name="notice_decide"),
    path("notices/image/<str:label>/panel/", notices.notices_panel, name="notices_panel"),
    path("notices/image/<str:label>/preview/", notices.notice_preview, name="notice_preview"),
    path(
        "notices/image/<str:label>/preview/html/",
        notices.notice_preview_html,
        name="notice_preview_html",
    ),
    path("notices/image/<str:label>/test/", notices.notice_send_test, name="notice_send_test"),
    path("unsubscribe/<str:token>/", notices.unsubscribe, name="unsubscribe"),
    # Refresh triggers and deprecation
    path("triggers/", triggers.triggers_page, name="triggers"),
    path("triggers/rebuild/", triggers.bulk_rebuild, name="bulk_rebuild"),
    path("images/<slug:label>/deprecation/", triggers.deprecation_panel, name="deprecation_panel"),
    path("images/<slug:label>/deprecation/set/", triggers.deprecation_set, name="deprecation_set"),
    path(
        "images/<slug:label>/deprecation/replacements/",
        triggers.replacement_options,
        name="replacement_options",
    ),
    path(
        "versions/<int:version_id>/advisories/",
        triggers.version_advisories,
        name="version_advisories",
    ),
    # Zone parity
    path("zones/parity/", parity.parity_page, name="parity"),
    path("zones/parity/check/", parity.parity_check, name="parity_check"),
    path("zones/parity/fix/", parity.parity_fix, name="parity_fix"),
    # Adopting the Marketplace that exists already
    path("adoption/", adoption.adoption_page, name="adoption"),
    path("adoption/run/", adoption.adoption_run, name="adoption_run"),
    path("adoption/labels/<int:pk>/", adoption.label_decide, name="adoption_label"),
    # The catalogue's lifecycle at a glance
    path("timeline/", timeline.catalogue_timeline, name="timeline"),
    # Image requests
    path("requests/", requests.request_list, name="requests"),
    path("requests/<int:pk>/", requests.request_detail, name="request_detail"),
    path("requests/<int:pk>/status/", requests.request_status, name="request_status"),
    path("requests/public/new/", requests.request_new, name="request_new"),
    path("requests/public/thanks/", requests.request_thanks, name="request_thanks"),
    path("requests/public/confirm/<str:token>/", requests.request_confirm, name="request_confirm"),
    path(
        "requests/public/stop/<str:token>/",
        requests.request_unsubscribe,
        name="request_unsubscribe",
    ),
]
