#!/bin/sh
# The Kafka ACLs smartroute needs: one principal per role, each allowed exactly what it does.
# deploy/INSTALL.md (step 8, "Who may trade") walks through it; the test suite grants
# these very ACLs on Apache Kafka (SASL_SSL, SCRAM-SHA-512, StandardAuthorizer) and runs
# smartroute with them and no more (tests/integration/test_kafka_acls.py).
#
#   BOOTSTRAP=kafka-1:9093 ADMIN_CONFIG=/root/kafka-admin.properties sh deploy/kafka-acls.sh
#
# Run it as a principal allowed to alter the cluster's ACLs (a super user); it only adds ACLs
# (run `kafka-acls.sh --remove` with the same arguments to take one back). Environment:
#
#   BOOTSTRAP      host:port of a broker's SASL_SSL listener (required)
#   ADMIN_CONFIG   client properties of that super user: security.protocol, sasl.*, ssl.* (required)
#   PREFIX         [kafka] topic_prefix                                    (smartroute.)
#   ROUTER_GROUP   [router] group_id                                       (smartroute-router)
#   TOPICS_ADMIN   who runs `smartroute topics create|check`               (User:smartroute-admin)
#   FEEDS          `smartroute feeds`: exchanges → quotes                  (User:smartroute-feeds)
#   DETECTOR       `smartroute detect`: quotes → opportunities             (User:smartroute-detector)
#   ROUTER         `smartroute route`: orders → results                    (User:smartroute-router)
#   ALL_IN_ONE     yes: ROUTER runs `smartroute run` (feeds, detector and router in one process)
#                  instead of `smartroute route`                            (no)
#   DESKS          the desks' producers and consumers, space-separated     (User:desk-1)
#   OPERATORS      operators: halt/resume, admin preferences, the DLQ      (User:ops)
#   KAFKA_ACLS     the kafka-acls command                                  (kafka-acls.sh)
#
# A Kafka cluster older than 2.8 also needs IdempotentWrite on the cluster for the feeds, detector and router;
# from 2.8 on, Write on a topic lets a principal's producer be idempotent, and nothing more is
# needed. Read implies Describe; Describe lets a process check at start that its topics exist.
# A consumer of your own that joins a consumer group also needs Read on that group.
set -eu

: "${BOOTSTRAP:?set BOOTSTRAP to host:port of a broker}"
: "${ADMIN_CONFIG:?set ADMIN_CONFIG to the super user client properties file}"
PREFIX=${PREFIX-smartroute.}
ROUTER_GROUP=${ROUTER_GROUP:-smartroute-router}
TOPICS_ADMIN=${TOPICS_ADMIN:-User:smartroute-admin}
FEEDS=${FEEDS:-User:smartroute-feeds}
DETECTOR=${DETECTOR:-User:smartroute-detector}
ROUTER=${ROUTER:-User:smartroute-router}
DESKS=${DESKS:-User:desk-1}
OPERATORS=${OPERATORS:-User:ops}
ALL_IN_ONE=${ALL_IN_ONE:-no}
KAFKA_ACLS=${KAFKA_ACLS:-kafka-acls.sh}

# allow PRINCIPAL OPERATION RESOURCE-OPTIONS...: one ALLOW ACL, from any host.
allow() {
    principal=$1 operation=$2
    shift 2
    "$KAFKA_ACLS" --bootstrap-server "$BOOTSTRAP" --command-config "$ADMIN_CONFIG" --add \
        --allow-principal "$principal" --operation "$operation" "$@"
}

# Topics admin: creates the contract's topics and compares their settings (`topics create|check`).
allow "$TOPICS_ADMIN" Create --topic "$PREFIX" --resource-pattern-type prefixed
allow "$TOPICS_ADMIN" Describe --topic "$PREFIX" --resource-pattern-type prefixed
allow "$TOPICS_ADMIN" DescribeConfigs --topic "$PREFIX" --resource-pattern-type prefixed

# Feeds: publish every quote.
allow "$FEEDS" Write --topic "${PREFIX}quotes"

# Detector: reads quotes in the group smartroute-detector, publishes opportunities,
# and sends a quote it cannot use to the DLQ.
allow "$DETECTOR" Read --topic "${PREFIX}quotes"
allow "$DETECTOR" Read --group smartroute-detector
allow "$DETECTOR" Write --topic "${PREFIX}opportunities"
allow "$DETECTOR" Write --topic "${PREFIX}dlq"

# Router: reads orders in its group; follows control, preferences (and, in `smartroute route`,
# opportunities) without a group: every router reads every record; answers on results, refusals
# go to the DLQ. In `smartroute run` its own detector publishes the opportunities instead.
allow "$ROUTER" Read --topic "${PREFIX}orders"
allow "$ROUTER" Read --group "$ROUTER_GROUP"
allow "$ROUTER" Read --topic "${PREFIX}control"
allow "$ROUTER" Read --topic "${PREFIX}preferences"
allow "$ROUTER" Write --topic "${PREFIX}results"
allow "$ROUTER" Write --topic "${PREFIX}dlq"
case $ALL_IN_ONE in
    yes) allow "$ROUTER" Write --topic "${PREFIX}opportunities" ;;
    no) allow "$ROUTER" Read --topic "${PREFIX}opportunities" ;;
    *) echo "ALL_IN_ONE must be yes or no, not $ALL_IN_ONE" >&2; exit 2 ;;
esac

# Desks: send orders and their own preferences (signed: the router checks who signed), read
# results and opportunities (`smartroute order` reads results without a group).
for desk in $DESKS; do
    allow "$desk" Write --topic "${PREFIX}orders"
    allow "$desk" Write --topic "${PREFIX}preferences"
    allow "$desk" Read --topic "${PREFIX}results"
    allow "$desk" Read --topic "${PREFIX}opportunities"
done

# Operators: halt and resume (signed), change a user's preferences (signed), read the DLQ and
# the opportunities (`smartroute top`).
for operator in $OPERATORS; do
    allow "$operator" Write --topic "${PREFIX}control"
    allow "$operator" Write --topic "${PREFIX}preferences"
    allow "$operator" Read --topic "${PREFIX}dlq"
    allow "$operator" Read --topic "${PREFIX}opportunities"
done
