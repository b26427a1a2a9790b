"""Browser tests of the customer chat page (headless Chromium via Playwright)."""
