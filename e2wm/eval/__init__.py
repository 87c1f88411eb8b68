"""Evaluation: score models on E2WM-format suites (multiple choice by likelihood, generation)."""
