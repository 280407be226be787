#!/usr/bin/env bash
# Sets up the AuthZEN interop "todo" scenario on a running `warrant serve`: the five users
# as humans with their roles, and the scenario's policies and schema in the policy
# directory, reloaded at once.
#
#   docs/examples/authzen-todo/setup.sh [DATA_DIR]
#
# DATA_DIR is the server's data directory (default ./warrant-data, or $WARRANT_DATA); the
# CLI reads the admin token from it and talks to $WARRANT_SERVER (default
# http://127.0.0.1:8080). Run it once per data directory: the emails are unique.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
data="${1:-${WARRANT_DATA:-./warrant-data}}"
export WARRANT_DATA="$data"

if [ ! -d "$data/policies" ]; then
  echo "no policy directory in $data: start \`warrant serve --data $data\` first" >&2
  exit 1
fi

# The scenario's policies, and the shipped schema with `ownerID` among the resource
# attributes (replacing any schema override already there: compare before running this
# on a data directory with one of its own).
cp "$here/todo.cedar" "$data/policies/todo.cedar"
cp "$here/warrant.cedarschema" "$data/policies/warrant.cedarschema"
warrant policy reload

# Each user with their roles and the id the scenario's identity provider gives them (what
# the 1.0 interop suite sends as `subject.id`; the email works as well).
warrant human add --name Rick --email rick@the-citadel.com --role admin --role evil_genius \
  --external-id CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs
warrant human add --name Morty --email morty@the-citadel.com --role editor \
  --external-id CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs
warrant human add --name Summer --email summer@the-smiths.com --role editor \
  --external-id CiRmZDI2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs
warrant human add --name Beth --email beth@the-smiths.com --role viewer \
  --external-id CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs
warrant human add --name Jerry --email jerry@the-smiths.com --role viewer \
  --external-id CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs
