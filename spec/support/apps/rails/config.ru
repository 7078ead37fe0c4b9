# frozen_string_literal: true

# A real Rails 6.1 app on iodine (spec/integration/rails_spec.rb); the app is in app.rb.
require_relative "app"

run Rails.application
