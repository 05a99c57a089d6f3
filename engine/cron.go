package engine

import (
	"context"
	"errors"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/sluicehq/sluice/internal/cron"
)

// Cron: upstream's iii-cron. A binding of trigger type "cron"
// ({expression, timezone?, condition_function_id?}) calls its function at
// each time the expression matches, with {trigger: "cron", job_id,
// scheduled_time, actual_time} (job_id is the binding's id). A job's runs
// never overlap: the next time is computed after a run ends, so times
// that pass during a run, or while the engine is down, are skipped.

const triggerTypeCron = "cron"

type cronConfig struct {
	Expression          string `json:"expression"`
	Timezone            string `json:"timezone"`
	ConditionFunctionID string `json:"condition_function_id"`

	sched *cron.Schedule
	loc   *time.Location
	stop  context.CancelFunc
	key   string // the schedule's identity across nodes (cluster_cron.go)
}

type cronModule struct {
	e        *Engine
	triggers *moduleTriggers[*cronConfig]
}

func (e *Engine) registerCron() {
	m := &cronModule{e: e}
	m.triggers = newModuleTriggers(func(raw jsontext.Value) (*cronConfig, error) {
		c, err := parseConfig[cronConfig](raw)
		if err != nil {
			return nil, err
		}
		if c.Expression == "" {
			return nil, errors.New("Cron expression is required")
		}
		if c.sched, err = cron.Parse(c.Expression); err != nil {
			return nil, err
		}
		c.loc = time.UTC
		if c.Timezone != "" {
			if c.loc, err = time.LoadLocation(c.Timezone); err != nil {
				return nil, errors.New("cron timezone " + quote(c.Timezone) + ": " + err.Error())
			}
		}
		return &c, nil
	})
	m.triggers.onAdd = m.start
	m.triggers.onDrop = func(mt *moduleTrigger[*cronConfig]) { mt.cfg.stop() }
	e.modules.cron = m
	e.addEngineTriggerType(triggerTypeCron, "Call a function on a cron schedule", m.triggers)
}

type cronEvent struct {
	Trigger       string `json:"trigger"`
	JobID         string `json:"job_id"`
	ScheduledTime string `json:"scheduled_time"`
	ActualTime    string `json:"actual_time"`
}

func (m *cronModule) start(mt *moduleTrigger[*cronConfig]) {
	mt.cfg.key = cronScheduleKey(mt.t.Namespace, mt.t.FunctionID, mt.cfg)
	ctx, cancel := context.WithCancel(m.e.ctx)
	mt.cfg.stop = cancel
	go func() {
		defer cancel()
		for {
			next, ok := mt.cfg.sched.Next(time.Now().In(mt.cfg.loc))
			if !ok {
				m.e.log.Warn("cron job has no upcoming run", "trigger_id", mt.t.ID, "expression", mt.cfg.Expression)
				return
			}
			timer := time.NewTimer(time.Until(next))
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			if !m.claimCron(ctx, mt, next) {
				continue // another node runs this time
			}
			data, _ := json.Marshal(cronEvent{Trigger: "cron", JobID: mt.t.ID,
				ScheduledTime: next.Format(time.RFC3339), ActualTime: time.Now().In(mt.cfg.loc).Format(time.RFC3339Nano)})
			m.e.runTrigger(ctx, "cron", mt.cfg.ConditionFunctionID, mt.t, data)
		}
	}()
}
