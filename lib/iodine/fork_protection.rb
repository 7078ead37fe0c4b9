# frozen_string_literal: true

module Iodine
  module Base
    # The C gem's built-in fork protection, registered when iodine is required: database
    # connections opened before the fork are dropped in the master (a socket shared by two
    # processes corrupts both sides' traffic), and ActiveRecord reconnects after it. Errors
    # are rescued: the hooks must never stop a fork.
    module ForkProtection
      module_function

      def before_fork
        if defined?(::ActiveRecord::Base) && ::ActiveRecord::Base.respond_to?(:connection)
          ::ActiveRecord::Base.connection.disconnect!
          ::ActiveRecord::Base.connection_pool.disconnect!
        end
      rescue StandardError => e
        Base.log(3, "fork protection: ActiveRecord disconnect failed: #{e.class}: #{e.message}")
      ensure
        disconnect_sequel
      end

      def disconnect_sequel
        ::Sequel::DATABASES.each(&:disconnect) if defined?(::Sequel::DATABASES)
      rescue StandardError => e
        Base.log(3, "fork protection: Sequel disconnect failed: #{e.class}: #{e.message}")
      end

      def after_fork
        return unless defined?(::ActiveRecord::Base) && ::ActiveRecord::Base.respond_to?(:establish_connection)

        ::ActiveRecord::Base.establish_connection
      rescue StandardError => e
        Base.log(3, "fork protection: ActiveRecord reconnect failed: #{e.class}: #{e.message}")
      end
    end
  end
end

Iodine.on_state(:before_fork) { Iodine::Base::ForkProtection.before_fork }
Iodine.on_state(:after_fork) { Iodine::Base::ForkProtection.after_fork }
