"""Models: registered versions, aliases, champion metrics and the promotion history (MLflow)."""

from __future__ import annotations

import streamlit as st

from app import data, ui

settings = ui.settings()
ui.title("Models")
for name in (settings.mlflow.anomaly_model, settings.mlflow.refund_model):
    st.subheader(name)
    registry = data.cached.model_registry(settings.mlflow.tracking_uri, name)
    versions, metrics = registry["versions"], registry["metrics"]
    if not len(versions):
        st.caption("no version registered yet (`trivas model train`)")
        continue
    champion = versions[versions["aliases"].str.contains("champion")]
    st.markdown(f"**champion** v{int(champion['version'].iloc[0])}" if len(champion) else "**champion** none")
    st.caption("promotion history: every registered version, oldest first, with the alias it holds now")
    st.table(versions.set_index("version"))  # static HTML: no data-grid bundle
    if len(metrics):
        st.table(metrics.set_index("version"))
    st.caption(f"registry `{data.shown_uri(settings.mlflow.tracking_uri)}` (read-only calls)")
