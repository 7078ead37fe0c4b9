# frozen_string_literal: true

require "action_cable/subscription_adapter/base"
require "action_cable/subscription_adapter/channel_prefix"
require "action_cable/subscription_adapter/subscriber_map"
require "iodine"

module ActionCable
  module SubscriptionAdapter
    # Action Cable's pub/sub on iodine's: `adapter: iodine` in config/cable.yml.
    #
    # A broadcast is an `Iodine.publish` through iodine's default engine, so it reaches every
    # process of an iodine cluster without Redis, and other machines when a Redis engine is
    # the default (`iodine -r redis://...`). Each channel this process streams from is one
    # `Iodine.subscribe`, made when its first stream starts and ended after its last one
    # stops; iodine runs its block on a worker thread, which hands the message to each
    # stream's handler (Action Cable's handlers post their work to Action Cable's own pool).
    #
    # Broadcasts reach this process only while iodine runs in it: a broadcast from a Rails
    # console or a job process goes through a Redis engine, or another adapter.
    #
    # (Inside this namespace `Iodine` is this class: iodine itself is `::Iodine`.)
    class Iodine < Base
      prepend ChannelPrefix

      def initialize(*)
        super
        @subscribers = Subscribers.new
      end

      # Publishes `payload` (Action Cable's JSON text) to every subscriber of `channel`.
      def broadcast(channel, payload)
        ::Iodine.publish(channel.to_s, payload.to_s)
      end

      def subscribe(channel, message_callback, success_callback = nil)
        @subscribers.add_subscriber(channel, message_callback, success_callback)
      end

      def unsubscribe(channel, message_callback)
        @subscribers.remove_subscriber(channel, message_callback)
      end

      # Ends this process's subscriptions (Action Cable's server restart).
      def shutdown
        @subscribers.clear
      end

      # Action Cable's subscriber map, with one iodine subscription per channel.
      class Subscribers < SubscriberMap
        def add_channel(channel, on_success)
          ::Iodine.subscribe(channel) do |_name, message|
            # iodine hands pub/sub messages over as binary Strings; Action Cable's are JSON text.
            broadcast(channel, message.dup.force_encoding(Encoding::UTF_8))
          end
          on_success&.call
        end

        def remove_channel(channel)
          ::Iodine.unsubscribe(channel)
        end

        # Drops every subscriber and ends every iodine subscription.
        def clear
          channels = @sync.synchronize do
            names = @subscribers.keys
            @subscribers.clear
            names
          end
          channels.each { |channel| ::Iodine.unsubscribe(channel) }
        end
      end
    end
  end
end
