"""Tests of localcloud, through the real Scaleway SDK and boto3 against a real process."""
