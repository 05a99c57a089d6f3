package sluice

import (
	"context"
	"errors"
)

// Durable topics (the engine's queue module): PublishDurable stores one
// copy of data per distinct function subscribed to topic, and each copy is
// delivered at least once, with retries and a dead-letter queue, like an
// Enqueue. See docs/queues.md.

// TriggerTypeDurableSubscriber is the trigger type that subscribes a
// function to a durable topic.
const TriggerTypeDurableSubscriber = "durable:subscriber"

// PublishDurable publishes data on a durable topic (iii::durable::publish)
// and returns once every subscriber's copy is stored.
func (c *Client) PublishDurable(ctx context.Context, topic string, data any) error {
	if topic == "" {
		return errors.New("sluice: durable topic must not be empty")
	}
	_, err := c.Trigger(ctx, "iii::durable::publish", map[string]any{"topic": topic, "data": data})
	return err
}

// SubscribeDurable subscribes functionID (registered with Register or
// RegisterRaw) to a durable topic and returns the binding's id (for
// UnregisterTrigger). queueConfig, if not nil, overrides the topic's
// delivery settings with upstream's keys (maxRetries, concurrency,
// visibilityTimeout, delaySeconds, backoffDelayMs).
func (c *Client) SubscribeDurable(topic, functionID string, queueConfig map[string]any) (string, error) {
	if topic == "" {
		return "", errors.New("sluice: durable topic must not be empty")
	}
	cfg := map[string]any{"topic": topic}
	if queueConfig != nil {
		cfg["queue_config"] = queueConfig
	}
	return c.RegisterTrigger(TriggerSpec{Type: TriggerTypeDurableSubscriber, FunctionID: functionID, Config: cfg})
}
