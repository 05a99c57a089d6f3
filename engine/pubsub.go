package engine

import (
	"context"
	"errors"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/invocation"
	"github.com/sluicehq/sluice/wire"
)

// PubSub: upstream's iii-pubsub. publish {topic, data} calls every binding
// of trigger type "subscribe" with that topic once, with data as its
// input; fire-and-forget (nothing is stored, publish answers null at once).

const triggerTypeSubscribe = "subscribe"

type subscribeConfig struct {
	Topic               string `json:"topic"`
	ConditionFunctionID string `json:"condition_function_id"`
}

type pubsubModule struct {
	e        *Engine
	triggers *moduleTriggers[subscribeConfig]
}

func (e *Engine) registerPubSub() {
	m := &pubsubModule{e: e, triggers: newModuleTriggers(func(raw jsontext.Value) (subscribeConfig, error) {
		c, err := parseConfig[subscribeConfig](raw)
		if err == nil && c.Topic == "" {
			err = errors.New("subscribe trigger: topic is required")
		}
		return c, err
	})}
	e.modules.pubsub = m
	e.addEngineTriggerType(triggerTypeSubscribe, "Subscribe to a topic", m.triggers)
	e.addBuiltin("publish", builtin(m.publish), false)
}

type publishInput struct {
	Topic string         `json:"topic"`
	Data  jsontext.Value `json:"data"`
}

func (m *pubsubModule) publish(_ context.Context, _ *invocation.Request, in publishInput) (jsontext.Value, *wire.ErrorBody) {
	if in.Topic == "" {
		return nil, &wire.ErrorBody{Code: "topic_not_set", Message: "Topic is not set"}
	}
	data := jsontext.Value("null")
	if len(in.Data) > 0 {
		data = append(jsontext.Value(nil), in.Data...)
	}
	for _, mt := range m.triggers.matching(func(c *subscribeConfig) bool { return c.Topic == in.Topic }) {
		m.e.deliver("pubsub", func() { m.e.runTrigger(m.e.ctx, "pubsub", mt.cfg.ConditionFunctionID, mt.t, data) })
	}
	return jsontext.Value("null"), nil
}
