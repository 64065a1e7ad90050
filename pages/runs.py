"""Placeholder until this page is built (see the dashboard issue)."""

import streamlit as st

st.info("This page is being built.")
